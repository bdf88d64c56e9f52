"""Inputs -> normalised, cleaned texts -> pretraining documents, one input file in memory at a
time; paragraphs are counted for repeated-paragraph removal as the documents are made."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medmill.builders.pretrain import BUILDER, BUILDER_VERSION
from medmill.builders.pretrain.boilerplate import ParagraphCounter
from medmill.builders.pretrain.config import PretrainConfig
from medmill.builders.pretrain.documents import make_documents
from medmill.builders.pretrain.normalise import T2S, normalise_text, tidy_whitespace
from medmill.builders.pretrain.sources import InputLog, iter_sources
from medmill.builders.text.clean import clean_text
from medmill.schemas import PretrainRecord, RejectRow, Source

Tick = Callable[[int], None]  # called with the number of input files just finished


def read_documents(
    cfg: PretrainConfig,
    log: InputLog,
    counts: Counter,
    paragraphs: ParagraphCounter | None = None,
    tick: Tick = lambda _n: None,
    skip: Sequence[Path] = (),
) -> Iterator[PretrainRecord]:
    t2s = T2S() if cfg.t2s else None
    literature = {Path(p) for p in cfg.literature}
    documents = [p for p in cfg.inputs if Path(p) not in literature]  # inputs list every input, literature too
    files_done = 0
    for src in iter_sources(
        documents, log, include=cfg.include, exclude=cfg.exclude, text_field=cfg.text_field, literature=cfg.literature, skip=skip
    ):
        if len(log.files) > files_done:
            tick(len(log.files) - files_done)
            files_done = len(log.files)
        counts["input_chars"] += len(src.text)
        text = normalise_text(src.text, counts)
        if t2s is not None:
            text = t2s(text, counts)
        if src.clean:
            cleaned = clean_text(text, cfg.clean)
            counts.update({f"clean.{k}": v for k, v in cleaned.counts.items() if v})
            text = cleaned.text
        else:
            text = tidy_whitespace(text, counts)
        if not text.strip():
            log.rejects.append(_reject("clean", "empty_after_cleaning", f"{src.name}: nothing left after cleaning", src.name, src.line))
            continue
        unit = cfg.doc_unit if src.clean else "file"  # rendered records are one document each (cut if long)
        counts["texts"] += 1
        group = src.name if src.kind == "json" else src.name.split("#", 1)[0]
        for piece in make_documents(text, unit, cfg.max_doc_chars, cfg.min_doc_chars):
            counts["documents_cut"] += 1
            if paragraphs is not None:
                paragraphs.add(piece.text)
            meta: dict[str, Any] = {"kind": src.kind, "unit": unit, **src.meta}
            if piece.headings:
                meta["headings"] = piece.headings
            # a section (its heading path) never straddles splits; finer than a file, so a single book
            # still gives a validation split near --val-size
            section = "|".join(piece.headings) if piece.headings and unit != "file" else ""
            source = Source(
                file=src.name.partition("#")[0].rpartition("@")[0] or src.name.partition("#")[0],
                line=src.line, offset=piece.offset, ref=f"{src.name}@{piece.offset}",
                group=f"{group}|{section}" if section else group, builder=BUILDER, builder_version=BUILDER_VERSION,
            )
            yield PretrainRecord(id=PretrainRecord.make_id(piece.text), text=piece.text, source=source, meta=meta)


def _reject(stage: str, reason: str, message: str, file: str | None, line: int | None) -> RejectRow:
    return RejectRow(stage=stage, reason=reason, message=message,
                     source=Source(file=file, line=line, builder=BUILDER, builder_version=BUILDER_VERSION))


def count_input_files(cfg: PretrainConfig, skip: Sequence[Path] = ()) -> int:
    """How many files (a dataset dir counts as one) the build will read: the progress bar's total."""
    from medmill.builders.pretrain.sources import is_dataset_dir
    from medmill.builders.readers.documents import collect_files

    literature = {Path(p) for p in cfg.literature}
    documents = [Path(p) for p in cfg.inputs if Path(p) not in literature]
    dirs = [p for p in documents if is_dataset_dir(p)]
    others = [p for p in documents if not is_dataset_dir(p)]
    files = collect_files(others, cfg.include, cfg.exclude, skip) if others else []
    return len(dirs) + len(files) + len(literature)
