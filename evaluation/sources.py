"""Rows of an eval source: a dataset dir's held-out split, or a public-format file (JSON, JSON Lines,
CSV in UTF-8 or GB18030). Unreadable rows are counted with their file:line, never dropped silently."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.schemas.dataset_dir import detect_kind, is_dataset_dir, load_splits
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import meta_of

EVAL_SPLITS = ("test", "validation")


@dataclass
class Problems:
    """Rows that could not be used: counted by reason, the first few named."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {why}")


def eval_split(path: Path, wanted: str | None = None) -> str:
    splits = load_splits(path)
    if wanted:
        if wanted not in splits:
            raise MedmillError(f"{path} has no {wanted!r} split (it has {', '.join(sorted(splits))})")
        return wanted
    for name in EVAL_SPLITS:
        if name in splits:
            return name
    raise MedmillError(
        f"{path} has no held-out split (test or validation; it has {', '.join(sorted(splits))}); "
        "pass --split NAME to evaluate on another one"
    )


def dir_rows(path: Path, wanted: str | None = None) -> tuple[str, str, list[dict[str, Any]]]:
    """(kind, split, rows with `meta` parsed) of a dataset dir's eval split."""
    kind = detect_kind(path)
    split = eval_split(path, wanted)
    rows = load_splits(path)[split].to_pylist()
    for row in rows:
        meta = meta_of(row.get("meta"))
        row["meta"] = meta if meta is not None else {"_unreadable": row.get("meta")}
    return kind, split, rows


def read_text_file(path: Path) -> str:
    raw = Path(path).read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MedmillError(f"{path}: neither UTF-8 nor GB18030 text")


def file_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, value): JSON objects from JSON / JSON Lines (sniffed by content), dicts from CSV/TSV,
    plain strings from other text. A broken JSON line gives an Exception value."""
    text = read_text_file(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise MedmillError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(rows, list):
            raise MedmillError(f"{path}: a JSON array was expected")
        yield from ((i + 1, row) for i, row in enumerate(rows))
        return
    if stripped.startswith("{"):
        try:
            whole = json.loads(text)  # one JSON object keyed by index (MedicalGPT-zh style)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict) and all(isinstance(v, dict) for v in whole.values()) and len(whole) > 1:
            yield from ((i + 1, row) for i, row in enumerate(whole.values()))
            return
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, ValueError(f"invalid JSON: {e.msg}")
        return
    first = stripped.splitlines()[0] if stripped else ""
    prose = Path(path).suffix.lower() in (".txt", ".md")  # plain text: commas are punctuation, not columns
    if Path(path).suffix.lower() in (".csv", ".tsv") or (not prose and (first.count(",") >= 2 or "\t" in first)):
        delimiter = "\t" if Path(path).suffix.lower() == ".tsv" or ("\t" in first and "," not in first) else ","
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        end = 1  # the header's last line; a row starts on the line after the previous row ended
        for row in reader:
            start, end = end + 1, reader.line_num
            yield start, {k.strip() if isinstance(k, str) else k: v for k, v in row.items()}
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield n, line


TEXT_SUFFIXES = (".txt", ".md", ".json", ".jsonl")


def text_files_in(path: Path) -> list[Path]:
    """The text files of a plain folder (not a dataset dir), sorted: ppl reads a folder of documents."""
    return sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def is_dir_source(path: Path, allow_text_folder: bool = False) -> bool:
    if Path(path).is_dir():
        if allow_text_folder and not is_dataset_dir(path):
            return False
        if not is_dataset_dir(path):
            raise MedmillError(f"{path} is a directory but not a medmill dataset dir (no data/ folder)")
        return True
    if not Path(path).exists():
        raise MedmillError(f"--data {path}: no such file or directory")
    return False


@dataclass
class Record:
    key: str
    origin: str
    row: dict[str, Any]  # messages / prompt+chosen+rejected / text, plus meta


def load_records(path: Path, kind: str, split: str | None = None, limit: int | None = None) -> tuple[list[Record], Problems, str]:
    """Records of one kind (sft, preference, pretrain) from a dataset dir's eval split or a public-format
    file (the trainers' importers: OpenAI messages, ShareGPT, alpaca, MedicalGPT reward, {"text"}, ...)."""
    from medmill.evaluation.cache import fingerprint
    from medmill.trainers.importers import CONVERTERS, BadRow

    path = Path(path)
    problems = Problems()
    records: list[Record] = []
    if is_dir_source(path, allow_text_folder=kind == "pretrain"):
        found, used, rows = dir_rows(path, split)
        if found != kind:
            raise MedmillError(f"{path} holds {found} records; this task reads {kind} records")
        for i, row in enumerate(rows):
            key = str(row.get("id") or fingerprint(row))
            records.append(Record(key, f"{path.name}:{used}:{row.get('id') or i}", row))
        described = f"{path} ({used} split)"
    else:
        files = text_files_in(path) if path.is_dir() else [path]
        if not files:
            raise MedmillError(f"{path}: a folder with no dataset dir and no text files ({', '.join(TEXT_SUFFIXES)})")
        rows_of_files = ((f, line, value) for f in files for line, value in file_rows(f))
        for f, line, value in rows_of_files:
            where = f"{f.name}:{line}"
            if isinstance(value, Exception):
                problems.add(where, str(value))
                continue
            try:
                row = CONVERTERS[kind](value)
            except BadRow as e:
                problems.add(where, str(e))
                continue
            row["meta"] = value.get("meta", {}) if isinstance(value, dict) and isinstance(value.get("meta"), dict) else {}
            records.append(Record(fingerprint(row), where, row))
        described = str(path)
    if limit:
        records = records[:limit]
    if not records:
        hint = f"; first problems: {'; '.join(problems.examples[:2])}" if problems.examples else ""
        raise MedmillError(f"{path}: no {kind} record could be read{hint}")
    seen: dict[str, int] = {}
    for r in records:
        n = seen.get(r.key, 0)
        seen[r.key] = n + 1
        if n:
            r.key = f"{r.key}#{n}"
    return records, problems, described
