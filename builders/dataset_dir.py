"""Reading dataset dirs back: which kind they hold, their split files, their rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from medmill.schemas import KIND_COLUMNS
from medmill.schemas.errors import MedmillError

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")


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
        split = m.group("split") if m else f.stem
        result.setdefault(split, []).append(f)
    if not result:
        raise MedmillError(f"{data} holds no parquet shards")
    return result


def detect_kind(path: Path) -> str:
    manifest = read_manifest(path)
    if manifest and manifest.get("kind") in KIND_COLUMNS:
        return manifest["kind"]
    first = next(iter(split_files(path).values()))[0]
    names = set(pq.read_schema(first).names)
    for kind in ("preference", "sft", "pretrain"):
        if {c for c in KIND_COLUMNS[kind] if c not in ("source", "meta")} <= names:
            return kind
    raise MedmillError(f"{path}: columns {sorted(names)} match no record kind (sft, preference, pretrain)")


def iter_rows(path: Path, split: str | None = None) -> Iterator[tuple[str, Path, int, dict[str, Any]]]:
    """Yield (split, shard file, row index in shard, row dict) for every record."""
    for name, files in split_files(path).items():
        if split is not None and name != split:
            continue
        for f in files:
            table = pq.read_table(f)
            for i, row in enumerate(table.to_pylist()):
                yield name, f, i, row
