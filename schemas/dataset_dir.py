"""The dataset-dir format, in one place for every layer: which columns each record kind has, their
arrow schemas, how shards are named, which kind a dir holds, and reading its splits back.

Builders write with it, curation and publish read with it, trainers load with it; it imports only
medmill.schemas, so trainers never need medmill.builders to read a dataset dir.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


@contextmanager
def shard_errors(f: Path) -> Iterator[None]:
    """Turn pyarrow's errors on a corrupt or cut-short shard into one line naming the file."""
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise MedmillError(f"{f} is not a readable parquet shard (corrupt or cut short?): {detail}") from None
def is_medmill_dataset_dir(path: Path) -> bool:
    """A dir a medmill build wrote (manifest.json beside data/): never raw input for another build."""
    return (Path(path) / "manifest.json").is_file() and (Path(path) / "data").is_dir()


# what a build writes into its --out dir (anything else there, e.g. an LLM cache, is kept)
BUILD_OWNED = ("data", "README.md", "manifest.json", "rejects.jsonl", "plots", "clusters.jsonl")


def check_out_not_input(out: Path, inputs: Iterable[Path], *, flag: str = "--out") -> None:
    """Refuse an output path that would overwrite or pollute what the command reads.

    The one check every command that writes after reading uses (run_build for every build, export,
    train): `out` may not be an input, may not lie inside an input dataset dir (the output would be
    written into a dir being read, and pushed with it), and may not hold an input where the build
    replaces files (out/data, out/README.md, ...)."""
    target = Path(out).resolve()
    for given in inputs:
        src = Path(given).resolve()
        if target == src:
            raise MedmillError(f"{flag} {out} is one of the inputs; write to a new path")
        if is_dataset_dir(src) and target.is_relative_to(src):
            raise MedmillError(f"{flag} {out} is inside the input dataset dir {given}; write outside it")
        if any(src.is_relative_to(target / name) for name in BUILD_OWNED):
            raise MedmillError(f"{flag} {out} would overwrite the input {given}; write to a new path")


def read_manifest(path: Path) -> dict[str, Any] | None:
    f = Path(path) / "manifest.json"
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MedmillError(f"{f} is not valid JSON: {e}") from None


_log = logging.getLogger("medmill")
_noted_unchecked: set[str] = set()


def shard_problems(path: Path, manifest: dict[str, Any], *, hashes: bool = False) -> list[str]:
    """How the shards in data/ differ from what manifest.json lists: missing or unlisted files,
    other sizes (and, with `hashes`, other sha256); empty when they match."""
    listed: dict[str, dict[str, Any]] = {}
    for info in (manifest.get("splits") or {}).values():
        shards = {s.get("file"): s for s in info.get("shards") or [] if isinstance(s, dict)}
        for name in info.get("files") or []:
            listed[name] = shards.get(name, {})
    present = {f"data/{f.name}" for f in (Path(path) / "data").glob("*.parquet")}
    problems = [f"{name} is missing" for name in sorted(set(listed) - present)]
    problems += [f"{name} is not in the manifest" for name in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        expected, f = listed[name], Path(path) / name
        if "bytes" in expected and f.stat().st_size != expected["bytes"]:
            problems.append(f"{name} has {f.stat().st_size} bytes, the manifest says {expected['bytes']}")
        elif hashes and "sha256" in expected and _sha256(f) != expected["sha256"]:
            problems.append(f"{name} has another sha256 than the manifest says")
    return problems


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def verify_shards(path: Path) -> None:
    """Refuse a dataset dir whose shards do not match its manifest (a deleted, added or cut shard);
    a dir without manifest.json (someone else's parquet, a Hub download) is read with a one-line note."""
    manifest = read_manifest(path)
    if manifest is None:
        key = os.path.abspath(path)
        if key not in _noted_unchecked:
            _noted_unchecked.add(key)
            _log.warning("%s has no manifest.json: its shards are read as they are, unchecked", path)
        return
    if not manifest.get("splits"):
        return  # nothing listed to check against
    problems = shard_problems(path, manifest)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MedmillError(f"{path}: shards do not match manifest.json: {problems[0]}{more}; rebuild or restore the dir")


def split_files(path: Path, *, verify: bool = True) -> dict[str, list[Path]]:
    """{split: [shard paths]} of a dataset dir, in shard order; with `verify` (the default) the shards
    are checked against manifest.json first (see `verify_shards`)."""
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
    if verify:
        verify_shards(path)
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
    """The kind a dataset dir holds: its manifest's, checked against its first shard's columns (a
    manifest that disagrees with its shards is an error naming both), else the one the columns match."""
    try:
        manifest = read_manifest(path)
    except MedmillError:
        manifest = None  # an unreadable manifest: the columns still tell
    stated = manifest.get("kind") if isinstance(manifest, dict) else None
    try:
        first = next(iter(split_files(path).values()))[0]
    except MedmillError:
        if stated in KIND_COLUMNS:  # a build that kept no record: no shard to check against
            return stated
        raise
    with shard_errors(first):
        names = set(pq.read_schema(first).names)
    kind = kind_of_columns(names)
    if stated in KIND_COLUMNS:
        if kind != stated:
            holds = f"{kind} records" if kind else "no record kind"
            raise MedmillError(
                f"{path}: manifest.json says kind {stated!r} but {first.name} has the columns of {holds} "
                f"({', '.join(sorted(names))}); fix the manifest's kind or rebuild the dir"
            )
        return stated
    if kind is None:
        raise MedmillError(f"{path}: columns {sorted(names)} match no record kind (sft, preference, pretrain)")
    return kind


def load_splits(path: Path) -> dict[str, pa.Table]:
    """{split: table} of a dataset dir, shards concatenated in order."""
    files = split_files(path)
    try:
        return {split: pa.concat_tables([pq.read_table(f) for f in fs]) for split, fs in files.items()}
    except (pa.ArrowException, OSError) as e:
        raise MedmillError(f"cannot read the shards of {path}: {str(e).splitlines()[0]}") from None


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
