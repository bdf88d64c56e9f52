"""The dataset-dir format, in one place for every layer: which columns each record kind has, their
arrow schemas, how shards are named, which kind a dir holds, and reading its splits back.

Builders write with it, curation and publish read with it, trainers load with it; it imports only
medmill.schemas, so trainers never need medmill.builders to read a dataset dir.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import MedmillError
from .records import KIND_COLUMNS

# Hub naming {split}-{i:05d}-of-{n:05d}.parquet; older `push_to_hub` added a fingerprint: ...-of-00001-<hex>.parquet
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<i>\d{5})-of-(?P<n>\d{5})(?:-[0-9a-f]+)?\.parquet$")
KIND_ORDER = ("preference", "sft", "pretrain")  # most specific columns first


def shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.parquet"


_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_SOURCE = pa.struct(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("offset", pa.int64()),
        ("ref", pa.string()),
        ("group", pa.string()),
        ("builder", pa.string()),
        ("builder_version", pa.string()),
    ]
)
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([("id", pa.string()), ("messages", _MESSAGES), ("source", _SOURCE), ("meta", pa.string())]),
    "preference": pa.schema(
        [
            ("id", pa.string()),
            ("prompt", _MESSAGES),
            ("chosen", _MESSAGES),
            ("rejected", _MESSAGES),
            ("source", _SOURCE),
            ("meta", pa.string()),
        ]
    ),
    "pretrain": pa.schema([("id", pa.string()), ("text", pa.string()), ("source", _SOURCE), ("meta", pa.string())]),
}


def is_dataset_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "data").is_dir()


def read_manifest(path: Path) -> dict[str, Any] | None:
    f = Path(path) / "manifest.json"
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MedmillError(f"{f} is not valid JSON: {e}") from None


def split_files(path: Path) -> dict[str, list[Path]]:
    """{split: [shard paths]} of a dataset dir, in shard order."""
    path = Path(path)
    if not path.is_dir():
        raise MedmillError(f"{path} is not a directory (expected a medmill dataset dir)")
    data = path / "data"
    if not data.is_dir():
        raise MedmillError(f"{path} has no data/ folder (expected a medmill dataset dir)")
    result: dict[str, list[Path]] = {}
    for f in sorted(data.glob("*.parquet")):
        m = SHARD_RE.match(f.name)
        result.setdefault(m.group("split") if m else f.stem, []).append(f)
    if not result:
        raise MedmillError(f"{data} holds no parquet shards")
    return result


def kind_of_columns(names: set[str]) -> str | None:
    """The record kind whose trainable columns are all in `names` (id, source and meta may be absent)."""
    for kind in KIND_ORDER:
        if {c for c in KIND_COLUMNS[kind] if c not in ("id", "source", "meta")} <= names:
            return kind
    return None


def detect_kind(path: Path) -> str:
    """The kind a dataset dir holds: its manifest's, else the one its first shard's columns match."""
    try:
        manifest = read_manifest(path)
    except MedmillError:
        manifest = None  # an unreadable manifest: the columns still tell
    if manifest and manifest.get("kind") in KIND_COLUMNS:
        return manifest["kind"]
    first = next(iter(split_files(path).values()))[0]
    names = set(pq.read_schema(first).names)
    kind = kind_of_columns(names)
    if kind is None:
        raise MedmillError(f"{path}: columns {sorted(names)} match no record kind (sft, preference, pretrain)")
    return kind


def load_splits(path: Path) -> dict[str, pa.Table]:
    """{split: table} of a dataset dir, shards concatenated in order."""
    files = split_files(path)
    try:
        return {split: pa.concat_tables([pq.read_table(f) for f in fs]) for split, fs in files.items()}
    except (pa.ArrowInvalid, OSError) as e:
        raise MedmillError(f"cannot read the shards of {path}: {e}") from None


def iter_rows(path: Path, split: str | None = None) -> Iterator[tuple[str, Path, int, dict[str, Any]]]:
    """Yield (split, shard file, row index in shard, row dict) for every record."""
    for name, files in split_files(path).items():
        if split is not None and name != split:
            continue
        for f in files:
            table = pq.read_table(f)
            for i, row in enumerate(table.to_pylist()):
                yield name, f, i, row
