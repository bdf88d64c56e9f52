"""Read medmill dataset dirs (data/{split}-*.parquet) without importing medmill.builders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medmill.schemas import KIND_COLUMNS
from medmill.schemas.errors import MedmillError

# medmill's and today's datasets' names; older `push_to_hub` added a fingerprint: train-00000-of-00001-<hex>.parquet
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?\.parquet$")


def is_dataset_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "data").is_dir()


def _columns_kind(names: set[str]) -> str | None:
    for kind in ("preference", "sft", "pretrain"):
        if {c for c in KIND_COLUMNS[kind] if c not in ("id", "source", "meta")} <= names:
            return kind
    return None


def dir_kind(path: Path) -> str:
    """The manifest's kind checked against the first shard's columns (a disagreement is an error
    naming both), else the kind the columns say."""
    stated = None
    manifest = Path(path) / "manifest.json"
    if manifest.exists():
        try:
            stated = json.loads(manifest.read_text(encoding="utf-8")).get("kind")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            stated = None
    try:
        first = next(iter(_split_files(path).values()))[0]
    except MedmillError:
        if stated in KIND_COLUMNS:  # a dir that kept no record
            return stated
        raise
    try:
        names = set(pq.read_schema(first).names)
    except (pa.ArrowException, OSError) as e:
        raise MedmillError(f"cannot read the shards of {path}: {str(e).splitlines()[0]}") from None
    found = _columns_kind(names)
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


def _split_files(path: Path) -> dict[str, list[Path]]:
    data = Path(path) / "data"
    if not data.is_dir():
        raise MedmillError(f"{path} has no data/ folder (expected a medmill dataset dir)")
    files: dict[str, list[Path]] = {}
    for f in sorted(data.glob("*.parquet")):
        m = SHARD_RE.match(f.name)
        files.setdefault(m.group("split") if m else f.stem, []).append(f)
    if not files:
        raise MedmillError(f"{data} holds no parquet shards")
    return files


def load_dir_splits(path: Path) -> dict[str, pa.Table]:
    """{split: table} of a dataset dir, shards concatenated in order."""
    files = _split_files(path)
    try:
        return {split: pa.concat_tables([pq.read_table(f) for f in fs]) for split, fs in files.items()}
    except (pa.ArrowException, OSError) as e:
        raise MedmillError(f"cannot read the shards of {path}: {str(e).splitlines()[0]}") from None
