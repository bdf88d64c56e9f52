"""Every input of build-pt as a stream of texts, one file at a time (never the whole corpus at once):

- text, Markdown, PDF, .docx, JSON/JSON Lines with a text field: build-book-qa's document loader;
  they are cleaned (page numbers, running headers, broken lines) before documents are cut;
- JSON/JSON Lines records without a text field that are conversations or QA pairs (messages,
  ShareGPT, instruction/output, 问/答 ...): rendered as text (render.py);
- literature files (`--literature`): title + abstract + conclusion per paper;
- dataset dirs (a `data/` folder of parquet shards): pretrain rows as they are, sft and preference
  rows rendered as text.

Unreadable items are reject rows naming file and line, as in the loaders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.builders.pretrain import BUILDER, BUILDER_VERSION
from medmill.builders.pretrain.render import render_literature, render_messages, render_record
from medmill.builders.readers.documents import collect_files, load_documents
from medmill.builders.readers.literature import read_literature
from medmill.schemas import RejectRow, Source
from medmill.schemas.dataset_dir import detect_kind, iter_rows


@dataclass
class SourceText:
    name: str  # stable name: file (relative to the input given), '#index' for an item in a file
    text: str
    kind: str  # txt | md | json | pdf | docx | dialogue | literature | pretrain | sft | preference
    clean: bool  # run text cleaning (page artefacts, broken lines) on it
    line: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputLog:
    """What reading saw: files, rejects and counts, filled while the stream is consumed."""

    files: list[Path] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (path / "data").is_dir() and any((path / "data").glob("*.parquet"))


def iter_sources(
    inputs: Sequence[Path],
    log: InputLog,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    text_field: str | None = None,
    literature: Sequence[Path] = (),
    skip: Sequence[Path] = (),
) -> Iterator[SourceText]:
    """`skip`: paths never read (the build's own out dir)."""
    dirs = [Path(p) for p in inputs if is_dataset_dir(Path(p))]
    others = [Path(p) for p in inputs if not is_dataset_dir(Path(p))]
    for d in dirs:
        yield from _dataset_dir(d, log)
    if others:
        for path, name in collect_files(others, include, exclude, skip):
            yield from _document_file(path, name, text_field, log)
    if literature:
        yield from _literature(literature, log, skip)


def _document_file(path: Path, name: str, text_field: str | None, log: InputLog) -> Iterator[SourceText]:
    loaded = load_documents([path], text_field=text_field)  # one file in memory at a time
    log.files.extend(loaded.files)
    log.counts.update(f"encoding.{e}" for e in loaded.encodings.values())
    for reject in loaded.rejects:
        if reject.source is not None and reject.source.file:
            reject.source.file = _renamed(reject.source.file, path.name, name)
        rendered = render_record(reject.raw) if reject.reason == "no_text_field" and isinstance(reject.raw, dict) else None
        if rendered:
            log.counts["inputs.dialogue_records"] += 1
            yield SourceText(
                f"{reject.source.file if reject.source else name}@{reject.source.line if reject.source else 0}",
                rendered, "dialogue", clean=False, line=reject.source.line if reject.source else None,
            )
            continue
        log.rejects.append(reject)
    for doc in loaded.documents:
        log.counts[f"inputs.{doc.format}"] += 1
        yield SourceText(
            _renamed(doc.name, path.name, name), doc.text, doc.format, clean=True, line=doc.line,
            meta={"encoding": doc.encoding} if doc.encoding else {},
        )


def _renamed(doc_name: str, file_name: str, stable: str) -> str:
    return stable + doc_name[len(file_name) :] if doc_name.startswith(file_name) else doc_name


def _dataset_dir(path: Path, log: InputLog) -> Iterator[SourceText]:
    kind = detect_kind(path)
    label = path.as_posix().rstrip("/")
    for split, shard, i, row in iter_rows(path):
        log.counts[f"inputs.{kind}_rows"] += 1
        if kind == "pretrain":
            text = row.get("text")
        elif kind == "sft":
            text = render_messages(row.get("messages") or [])
        else:
            text = render_messages(list(row.get("prompt") or []) + list(row.get("chosen") or []))
        ref = f"{label}#{split}/{row.get('id')}"
        if not isinstance(text, str) or not text.strip():
            log.rejects.append(
                RejectRow(stage="read", reason="empty", message=f"{shard.name} row {i}: no text",
                          source=Source(file=f"{label}/data/{shard.name}", line=i, builder=BUILDER, builder_version=BUILDER_VERSION), raw=row)
            )
            continue
        yield SourceText(ref, text, kind, clean=False, line=i, meta={"from_id": row.get("id")})
    if (path / "manifest.json").is_file():
        log.files.append(path / "manifest.json")


def _literature(paths: Sequence[Path], log: InputLog, skip: Sequence[Path]) -> Iterator[SourceText]:
    read = read_literature(paths, skip=skip)
    log.files.extend(read.files)
    log.rejects.extend(read.rejects)
    for rec in read.records:
        log.counts["inputs.literature_records"] += 1
        ref = rec.ref
        name = f"{ref.file}@{ref.line}" if ref is not None and ref.file else rec.title[:40]
        meta = {k: v for k, v in {"doi": rec.doi, "year": rec.year, "journal": rec.journal}.items() if v}
        yield SourceText(name, render_literature(rec), "literature", clean=False,
                         line=ref.line if ref is not None else None, meta=meta)
