"""Dataset dirs as a stream of record batches, in the order `curation.inputs.load_dirs` reads them
(dirs as given; within a dir test, validation, train, then other splits; shards in order; rows in
order), so first-seen rules give the same answer streamed or not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medmill.builders.curation.inputs import SPLIT_ORDER, dir_label
from medmill.schemas.dataset_dir import split_files
from medmill.schemas.errors import MedmillError

DEFAULT_BATCH_ROWS = 20_000


@dataclass
class InputBatch:
    """Rows `first_row`.. of one shard file."""

    seq: int  # batch number in the stream
    table: pa.Table
    file: str
    split: str
    origin: str  # the dir label records carry in meta.source_dir
    first_row: int


def ordered_files(d: Path) -> list[tuple[str, Path]]:
    files = split_files(Path(d))
    order = [s for s in SPLIT_ORDER if s in files] + sorted(s for s in files if s not in SPLIT_ORDER)
    return [(split, f) for split in order for f in files[split]]


def count_rows(dirs: list[Path]) -> int:
    """Records in every shard, from parquet footers (for progress bars)."""
    total = 0
    for d in dirs:
        for _split, f in ordered_files(d):
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, pa.ArrowException) as e:
                raise MedmillError(f"cannot read {f}: {e}") from None
    return total


def _open(f: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(f)
    except (OSError, pa.ArrowException) as e:
        raise MedmillError(f"cannot read {f}: {e}") from None


def _file_batches(pf: pq.ParquetFile, f: Path, split: str, label: str, seq: int, batch_rows: int) -> Iterator[InputBatch]:
    """One shard in batches of `batch_rows`, decoded once, numbered from `seq`."""
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            yield InputBatch(seq, pa.Table.from_batches([batch]), str(f), split, label, row)
            seq += 1
            row += batch.num_rows
    except (OSError, pa.ArrowException) as e:
        raise MedmillError(f"cannot read {f}: {e}") from None


def _group_sizes(pf: pq.ParquetFile) -> list[int]:
    return [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]


def _slices(groups: list[int], f: Path, split: str, label: str, seq: int, batch_rows: int) -> list[Slice]:
    """Slices of at most `batch_rows` rows of one shard, numbered from `seq`, never spanning two row groups."""
    out: list[Slice] = []
    at = 0
    for n in groups:
        for start in range(at, at + n, batch_rows):
            out.append(Slice(seq + len(out), str(f), split, label, start, min(at + n, start + batch_rows)))
        at += n
    return out


def iter_batches(dirs: list[Path], batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[InputBatch]:
    seq = 0
    for d in dirs:
        label = dir_label(d)
        for split, f in ordered_files(d):
            for batch in _file_batches(_open(f), f, split, label, seq, batch_rows):
                yield batch
                seq += 1


@dataclass
class Slice:
    """Rows `start`..`stop` of one shard: what a worker reads itself, so only this small plan crosses
    processes (not the rows)."""

    seq: int
    file: str
    split: str
    origin: str
    start: int
    stop: int


def read_plan(dirs: list[Path], batch_rows: int = DEFAULT_BATCH_ROWS) -> list[Slice]:
    """Slices of at most `batch_rows` records of every shard, in `iter_batches` order. A slice never
    spans two row groups, so a worker decodes no row it does not use when row groups are a multiple of
    `batch_rows` (and at most one row group otherwise)."""
    out: list[Slice] = []
    for d in dirs:
        label = dir_label(d)
        for split, f in ordered_files(d):
            out += _slices(_group_sizes(_open(f)), f, split, label, len(out), batch_rows)
    return out


def plan_batches(dirs: list[Path], batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Slice | InputBatch]:
    """`read_plan`, lazily, except for shards whose row groups are much larger than a batch (the writer's
    shards hold up to 1Mi rows in one group): a worker reading a slice of such a group decodes the whole
    group, once per slice, so those shards are read here in one pass and their batches handed over."""
    seq = 0
    for d in dirs:
        label = dir_label(d)
        for split, f in ordered_files(d):
            pf = _open(f)
            groups = _group_sizes(pf)
            if max(groups, default=0) <= 2 * batch_rows:
                parts: Iterator[Slice | InputBatch] = iter(_slices(groups, f, split, label, seq, batch_rows))
            else:
                parts = _file_batches(pf, f, split, label, seq, batch_rows)
            for part in parts:
                yield part
                seq += 1


def read_slice(s: Slice) -> InputBatch:
    """The rows of `s`, reading only the row group(s) that hold them."""
    try:
        pf = pq.ParquetFile(s.file)
        groups, first, at = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if at + n > s.start and at < s.stop:
                groups.append(g)
                first = at if first is None else first
            at += n
        table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
    except (OSError, pa.ArrowException) as e:
        raise MedmillError(f"cannot read {s.file}: {e}") from None
    return InputBatch(s.seq, table.slice(s.start - (first or 0), s.stop - s.start), s.file, s.split, s.origin, s.start)
