"""Reading dataset dirs back: which kind they hold, their split files, their rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medmill.schemas import KIND_COLUMNS
from medmill.schemas.errors import MedmillError

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")


@contextmanager
def shard_errors(f: Path) -> Iterator[None]:
    """Turn pyarrow's errors on a corrupt or cut-short shard into one line naming the file."""
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise MedmillError(f"{f} is not a readable parquet shard (corrupt or cut short?): {detail}") from None


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


def _kind_of_columns(names: set[str]) -> str | None:
    for kind in ("preference", "sft", "pretrain"):
        if {c for c in KIND_COLUMNS[kind] if c not in ("source", "meta")} <= names:
            return kind
    return None


def detect_kind(path: Path) -> str:
    """The record kind of a dir: its manifest's, checked against the columns of its first shard (a
    manifest that disagrees with its shards is an error naming both), else the columns'."""
    manifest = read_manifest(path)
    stated = manifest.get("kind") if manifest else None
    try:
        first = next(iter(split_files(path).values()))[0]
    except MedmillError:
        if stated in KIND_COLUMNS:  # a build that kept no record: no shard to check against
            return stated
        raise
    with shard_errors(first):
        names = set(pq.read_schema(first).names)
    found = _kind_of_columns(names)
    if stated in KIND_COLUMNS:
        if found != stated:
            holds = f"{found} records" if found else "no record kind"
            raise MedmillError(
                f"{path}: manifest.json says kind {stated!r} but {first.name} has the columns of {holds} "
                f"({', '.join(sorted(names))}); fix the manifest's kind or rebuild the dir"
            )
        return stated
    if found is None:
        raise MedmillError(f"{path}: columns {sorted(names)} match no record kind (sft, preference, pretrain)")
    return found


def iter_rows(path: Path, split: str | None = None) -> Iterator[tuple[str, Path, int, dict[str, Any]]]:
    """Yield (split, shard file, row index in shard, row dict) for every record."""
    for name, files in split_files(path).items():
        if split is not None and name != split:
            continue
        for f in files:
            with shard_errors(f):
                table = pq.read_table(f)
            for i, row in enumerate(table.to_pylist()):
                yield name, f, i, row
