"""The shard writer: records + rejects -> a dataset dir (data/*.parquet, README.md, manifest.json,
rejects.jsonl), written atomically so an interrupted build never leaves a dir that looks complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medmill.builders.core.collect import RejectSink
from medmill.builders.core.fileinfo import describe_inputs, describe_os_error, sha256_file
from medmill.builders.core.manifest import InputFile, Manifest, ShardInfo, SplitInfo
from medmill.builders.core.secrets import redact, redact_text
from medmill.builders.core.splits import split_by_group
from medmill.schemas import KIND_COLUMNS, Record, RejectRow
from medmill.schemas.dataset_dir import ARROW_SCHEMAS, BUILD_OWNED, shard_name
from medmill.schemas.errors import MedmillError
from medmill.schemas.names import printable_name, printable_value
from medmill.version import __version__

DEFAULT_MAX_SHARD_BYTES = 256 * 1024 * 1024
# (manifest, the finished dir being written, description) -> README.md text; publish.card.render_card
# is the real one, passed in by the build so the writer needs nothing from publish/
CardRenderer = Callable[[Manifest, Path, str], str]
Row = Record | dict[str, Any]

@dataclass
class BuildInfo:
    """Everything about a build the manifest and card report besides the records themselves."""

    kind: str
    builder: str
    command: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)
    seed: int = 42
    val_size: float = 0.0
    test_size: float = 0.0
    license: str = "other"
    source_licenses: dict[str, str] = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)
    curation: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)  # the builder's own tables (Collector.stats)
    prompts: list[dict[str, str]] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    description: str = ""
    extra_files: dict[str, str] = field(default_factory=dict)
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    # record id -> split: keep the splits records already had (medmill filter / dedup over dataset dirs)
    fixed_splits: dict[str, str] | None = None


def shard_info(root: Path, name: str) -> ShardInfo:
    path = root / name
    return ShardInfo(file=name, bytes=path.stat().st_size, sha256=sha256_file(path))


def _group_of(row: dict[str, Any]) -> str:
    src = row.get("source") or {}
    return src.get("group") or src.get("ref") or row["id"]


def _shards(table: pa.Table, max_bytes: int) -> list[pa.Table]:
    n = max(1, math.ceil(table.nbytes / max(1, max_bytes)))
    n = min(n, max(1, table.num_rows))
    step = math.ceil(table.num_rows / n) if table.num_rows else 0
    if step == 0:
        return [table]
    return [table.slice(i, step) for i in range(0, table.num_rows, step)]


def unique_rows(rows: Sequence[Row], stage: str = "write") -> tuple[list[Row], list[RejectRow]]:
    """Keep the first record of each id (ids are content hashes, so a repeat is an exact duplicate).
    `rows` are schema records or rows as `Record.to_row()` makes them; a reject keeps the row."""
    seen: dict[str, Row] = {}
    rejects: list[RejectRow] = []
    for row in rows:
        rid = row["id"] if isinstance(row, dict) else row.id
        if rid in seen:
            raw = row if isinstance(row, dict) else row.to_row()
            rejects.append(
                RejectRow(
                    stage=stage,
                    reason="exact_duplicate",
                    message=f"same content as record {rid}",
                    source=raw.get("source"),
                    raw=raw,
                )
            )
            continue
        seen[rid] = row
    return list(seen.values()), rejects


def plain_card(manifest: Manifest, _dir: Path, description: str) -> str:
    """The README.md written when no card renderer is given: the description and the counts."""
    counts = ", ".join(f"{k}: {v.records}" for k, v in manifest.splits.items()) or "no records"
    return f"# {manifest.builder} dataset\n\n{description}\n\nRecords ({manifest.kind}): {counts}.\n"


def write_dataset_dir(
    out_dir: Path,
    records: Sequence[Record | dict[str, Any]],
    rejects: RejectSink | Sequence[RejectRow],
    info: BuildInfo,
    render_card: CardRenderer = plain_card,
) -> Manifest:
    """Write the dataset dir in a staging dir inside `out_dir`, then move it into place.

    `records` are schema objects (or rows as `Record.to_row()` makes them); ids must be content hashes.
    `render_card` writes README.md (builds pass medmill.builders.publish.card.render_card).
    """
    if info.kind not in ARROW_SCHEMAS:
        raise MedmillError(f"unknown record kind {info.kind!r}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    rows = [r if isinstance(r, dict) else r.to_row() for r in records]
    rows, dup_rejects = unique_rows(rows)
    by_reason = Counter(rejects.by_reason) if isinstance(rejects, RejectSink) else Counter(f"{r.stage}/{r.reason}" for r in rejects)
    by_reason.update(f"{r.stage}/{r.reason}" for r in dup_rejects)
    if info.fixed_splits is not None:
        splits: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            splits.setdefault(info.fixed_splits.get(row["id"], "train"), []).append(row)
    else:
        splits = split_by_group(rows, _group_of, val_size=info.val_size, test_size=info.test_size, seed=info.seed)
    schema = ARROW_SCHEMAS[info.kind]
    columns = KIND_COLUMNS[info.kind]

    with staging(out_dir) as tmp:
        (tmp / "data").mkdir()
        split_infos: dict[str, SplitInfo] = {}
        for split in split_order(splits):
            split_rows = sorted(splits.get(split, []), key=lambda r: r["id"])
            if not split_rows:
                continue
            table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in split_rows], schema=schema)
            parts = _shards(table, info.max_shard_bytes)
            names = []
            for i, part in enumerate(parts):
                name = f"data/{shard_name(split, i, len(parts))}"
                pq.write_table(part, tmp / name, compression="zstd")
                names.append(name)
            split_infos[split] = SplitInfo(records=len(split_rows), files=names, shards=[shard_info(tmp, n) for n in names])
        with open(tmp / "rejects.jsonl", "w", encoding="utf-8") as f:
            if isinstance(rejects, RejectSink):
                f.writelines(rejects.lines())
            else:
                f.writelines(r.to_json() + "\n" for r in rejects)
            f.writelines(r.to_json() + "\n" for r in dup_rejects)
        return finish_dataset_dir(tmp, out_dir, split_infos, by_reason, info, render_card)


def check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MedmillError(f"cannot create --out {out_dir}: {describe_os_error(out_dir, e)}") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise MedmillError(f"--out {out_dir} exists and is not a directory")


def split_order(splits: Iterable[str]) -> list[str]:
    """The order splits are written in: train, validation, test, then any other by name."""
    return ["train", "validation", "test", *sorted(set(splits) - {"train", "validation", "test"})]


def finish_dataset_dir(
    tmp: Path,
    out_dir: Path,
    split_infos: dict[str, SplitInfo],
    by_reason: Counter,
    info: BuildInfo,
    render_card: CardRenderer = plain_card,
) -> Manifest:
    """Everything after the shards and rejects.jsonl are in `tmp`: extra files, manifest, card, then
    the swap into `out_dir`. Shared by the in-memory writer and the streaming one."""
    for name, text in info.extra_files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text, encoding="utf-8")
    manifest = Manifest(
        version=__version__,
        kind=info.kind,
        builder=info.builder,
        command=printable_name(redact_text(info.command)),
        params=printable_value(redact(info.params)),
        seed=info.seed,
        inputs=[InputFile(**d) for d in describe_inputs(info.inputs)],
        splits=split_infos,
        records_total=sum(s.records for s in split_infos.values()),
        rejects_total=sum(by_reason.values()),
        rejects_by_reason=dict(sorted(by_reason.items())),
        counters=dict(sorted(info.counters.items())),
        curation=info.curation,
        stats=info.stats,
        prompts=info.prompts,
        llm=redact(info.llm),
        usage=info.usage,
        timings={k: round(v, 3) for k, v in info.timings.items()},
        license=info.license,
        source_licenses=printable_value(info.source_licenses),
    )
    (tmp / "README.md").write_text(printable_name(render_card(manifest, tmp, info.description)), encoding="utf-8")
    # manifest last: its presence marks a finished dir
    (tmp / "manifest.json").write_text(
        json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    _swap_into_place(tmp, out_dir)
    return manifest


STAGING_PREFIX = ".medmill-staging-"


def staging_dir(out_dir: Path) -> tuple[Path, bool]:
    """A temp dir INSIDE `out_dir` (created if missing; True when this call made it), so the final
    moves stay on one file system even when `out_dir` is a mount point (a rename from its parent
    fails there with EXDEV). Staging left by an interrupted build is removed first."""
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir)), created
    except OSError as e:
        raise MedmillError(f"cannot write into --out {out_dir}: {e.strerror or e}") from None


@contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A staging dir inside `out_dir` (see `staging_dir`) for a writer to fill and move into place; on
    any failure it is removed, and `out_dir` too when this call created it and it is left empty."""
    tmp, created = staging_dir(out_dir)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            rmdir_if_empty(out_dir)
        raise


def rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def failed_rejects_path(out_dir: Path) -> Path:
    """Where a build that kept no record leaves its rejects: beside --out, never replacing the dataset in it."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".rejects.jsonl")


def write_failed_rejects(out_dir: Path, rejects: RejectSink | Sequence[RejectRow]) -> Path | None:
    """Write the rejects of a failed build to `failed_rejects_path(out_dir)`; None when that is not writable."""
    path = failed_rejects_path(out_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            if isinstance(rejects, RejectSink):
                f.writelines(rejects.lines())
            else:
                f.writelines(r.to_json() + "\n" for r in rejects)
    except OSError:
        return None
    return path


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Move the finished files into `out_dir`, keeping what the build does not own (an LLM cache).

    manifest.json goes first out and last in, so a dir without it is known to be unfinished.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove(out_dir / "manifest.json")
    for name in BUILD_OWNED:  # a previous build's reports must not pass for this one's
        if not (tmp / name).exists():
            _remove(out_dir / name)
    for child in sorted(tmp.iterdir()):
        if child.name == "manifest.json":
            continue
        _remove(out_dir / child.name)
        os.replace(child, out_dir / child.name)
    os.replace(tmp / "manifest.json", out_dir / "manifest.json")
    tmp.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
