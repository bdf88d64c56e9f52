"""The streaming shard writer: the same dataset dir `writer.write_dataset_dir` writes for the same
records (byte-identical shards, the same rejects.jsonl and card), from the spill, one shard in memory
at a time.

What the in-memory writer does, and how it is done here from the spill and per-split size totals:
- first record of each id wins, later ones become `write/exact_duplicate` rejects: keys of every
  survivor are sorted (numpy, stable), runs of equal keys are ordered by their full ids read back
  from the spill, so groups of equal ids are adjacent;
- a record's split is the split given for its id (the last record with that id says it, as a dict
  update would);
- per split, rows sorted by id are cut into ceil(table bytes / max shard bytes) shards of equal row
  count: table bytes come from size totals per split (`sizes.SizeTotals`, summed by the workers),
  corrected by the few rows not written (duplicates, dedup) or written under another split, whose
  figures the workers left in the spill (`TableSizer.as_columns`: a few bytes per row, read instead
  of the rows);
- every written row gets its index in writing order (split by split, by id), so a shard is a range of
  indexes; one pass over the spill routes rows to one temp file per shard (lz4 Arrow IPC) with their
  place in it, then each shard is put in place and written as the in-memory writer writes it, built a
  column at a time; the card's stats are taken from each shard as it is encoded (`StatsCollector`,
  in a thread), not read back.

Memory per spill row (positions are int32): 8 B (id sort key) + 1 B (split code) + 1 B (keep flag)
from the caller; while sorting, 20 B more for a moment (a 8-byte argsort, the 4-byte order; +12 B
when dedup dropped some rows: the survivors' positions and keys); 12 B while shards are planned (write
index, first row of each id, its split, duplicate flag); 7 B while rows are routed (keys freed); then
2 B while shards are written. Everything else is per shard (its arrow table, ~2x its bytes with the
parquet encoder's buffers) or per spill part.
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medmill.builders.core.manifest import Manifest, SplitInfo
from medmill.builders.core.writer import (
    BuildInfo,
    check_out_dir,
    finish_dataset_dir,
    shard_info,
    split_order,
    staging,
)
from medmill.builders.publish.card import render_card
from medmill.builders.publish.stats import StatsCollector
from medmill.builders.streaming.batch import SPLIT_COL
from medmill.builders.streaming.keys import id_keys
from medmill.builders.streaming.sizes import RowSizes, SizeTotals, TableSizer
from medmill.builders.streaming.spill import Spill
from medmill.schemas import KIND_COLUMNS, RejectRow
from medmill.schemas.dataset_dir import ARROW_SCHEMAS, shard_name
from medmill.schemas.errors import MedmillError


def _shard_count(rows: int, nbytes: int, max_bytes: int) -> tuple[int, int]:
    """(shards, rows per shard) exactly as `writer._shards` cuts a table."""
    n = max(1, math.ceil(nbytes / max(1, max_bytes)))
    n = min(n, max(1, rows))
    step = math.ceil(rows / n) if rows else 0
    return (math.ceil(rows / step) if step else 1), step


def write_streamed(
    out_dir: Path,
    spill: Spill,
    keep: np.ndarray,
    ids: pa.Array,
    splits: pa.Array,
    sizes: RowSizes,
    reject_files: Sequence[Path],
    by_reason: Counter,
    info: BuildInfo,
    work: Path,
    extra_paths: dict[str, Path] | None = None,
) -> Manifest:
    """`write_spill` for callers that hold every spill row's id, split and size figures (arrays per
    spill row); `write_spill` needs only 9 B per row."""
    codes = pc.dictionary_encode(splits.combine_chunks() if isinstance(splits, pa.ChunkedArray) else splits)
    names = codes.dictionary.to_pylist()
    split_codes = codes.indices.to_numpy(zero_copy_only=False).astype(np.uint8)
    sizer = TableSizer(ARROW_SCHEMAS[info.kind]) if info.kind in ARROW_SCHEMAS else None
    totals = {name: sizer.totals(sizes.take(np.flatnonzero(split_codes == i))) for i, name in enumerate(names)} if sizer else {}
    return write_spill(out_dir, spill, keep, [id_keys(ids)], split_codes, names, totals, reject_files, by_reason, info, work,
                       extra_paths)


POSITION = np.int32  # spill row positions: 4 B each (a spill of 2^31 rows or more is refused)


def _id_order(spill: Spill, keys: np.ndarray, survivors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(`survivors` (None: every spill row) sorted by id, then by position; True where a new id starts).
    Keys order all but the ids that share a key; those runs are ordered by their ids, read back from
    the spill."""
    if survivors is None:  # no copy of the keys to sort (filter: every row survives)
        order = np.argsort(keys, kind="stable").astype(POSITION)
    else:
        order = survivors[np.argsort(keys[survivors], kind="stable")]  # POSITION, like survivors
    n = len(order)
    starts = np.ones(n, dtype=bool)
    if n < 2:
        return order, starts
    same_key = keys[order[1:]] == keys[order[:-1]]
    tied = np.zeros(n, dtype=bool)
    tied[1:] |= same_key
    tied[:-1] |= same_key
    at = np.flatnonzero(tied)
    del same_key, tied
    if len(at):
        ids = spill.take(order[at], ["id"]).column(0).combine_chunks()
        runs = pa.table({"key": keys[order[at]], "id": ids, "pos": order[at]})
        by = pc.sort_indices(runs, sort_keys=[("key", "ascending"), ("id", "ascending"), ("pos", "ascending")])
        order[at] = order[at][by.to_numpy()]
        ids = ids.take(by)
        if len(at) > 1:
            repeat = pc.equal(ids.slice(1), ids.slice(0, len(at) - 1)).to_numpy(zero_copy_only=False)
            starts[at[1:][(at[1:] == at[:-1] + 1) & repeat]] = False
    return order, starts


def _all_keys(keys: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """The keys as one array; a list (of per-batch arrays) is emptied, so they are freed once sorted."""
    if isinstance(keys, list) and len(keys) == 1:
        return np.asarray(keys.pop(), np.uint64)
    if isinstance(keys, list):  # copied batch by batch, each freed once copied: 8 B per row, not 16
        whole = np.empty(sum(len(k) for k in keys), np.uint64)
        at = 0
        keys.reverse()
        while keys:
            part = keys.pop()
            whole[at : at + len(part)] = part
            at += len(part)
        return whole
    return np.asarray(keys)


def _totals_of(spill: Spill, groups: dict[str, np.ndarray], columns: list[str], sizer: TableSizer) -> dict[str, SizeTotals]:
    """Size figures of each group of spill rows (ascending positions; groups may share rows), in one
    pass over the spill: each part is read at most once."""
    total = {name: sizer.empty_totals() for name in groups}
    wanted = [p for p in groups.values() if len(p)]
    if not wanted:
        return total
    union = np.unique(np.concatenate(wanted))
    carried = spill.schema is not None and all(c in spill.schema.names for c in sizer.column_names)
    for pos, table in spill.scan(union, sizer.column_names if carried else columns):
        # the figures the workers put in the spill (a few bytes per row), else computed from the rows
        sizes = sizer.from_columns(table) if carried else sizer.row_sizes(table.cast(sizer.schema))
        for name, rows in groups.items():
            at = np.searchsorted(rows, pos)
            inside = np.flatnonzero(rows[np.minimum(at, max(0, len(rows) - 1))] == pos) if len(rows) else at[:0]
            if len(inside):
                total[name] = total[name] + sizer.totals(sizes.take(inside))
    return total


def write_spill(
    out_dir: Path,
    spill: Spill,
    keep: np.ndarray,
    keys: np.ndarray | list[np.ndarray],
    split_codes: np.ndarray,
    split_names: list[str],
    totals: dict[str, SizeTotals],
    reject_files: Sequence[Path],
    by_reason: Counter,
    info: BuildInfo,
    work: Path,
    extra_paths: dict[str, Path] | None = None,
) -> Manifest:
    """Write the dataset dir of the spill rows where `keep`; `reject_files` (JSON lines, in order) are
    the rejects so far, `by_reason` their counts. Per spill row: `keys` (uint64, `keys.id_keys` of its
    id; a list of per-batch arrays is emptied, so they are freed as soon as they are sorted) and
    `split_codes` (index into `split_names`); `totals`: per split, the size figures of all its
    spill rows (kept or not). `extra_paths` are files moved into the dir under the given names."""
    if info.kind not in ARROW_SCHEMAS:
        raise MedmillError(f"unknown record kind {info.kind!r}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    schema = ARROW_SCHEMAS[info.kind]
    columns = KIND_COLUMNS[info.kind]
    by_reason = Counter(by_reason)
    sizer = TableSizer(schema)
    codes = np.asarray(split_codes)

    # 1. unique ids: the first survivor of each id, and the split its last survivor names
    if len(codes) >= np.iinfo(POSITION).max:
        raise MedmillError(f"{len(codes):,} records is more than the streaming writer takes (2^31 - 1)")
    keep = np.asarray(keep, dtype=bool)
    survivors = None if keep.all() else np.flatnonzero(keep).astype(POSITION)
    order, starts = _id_order(spill, _all_keys(keys), survivors)  # keys freed here
    del survivors
    del keys
    start_at = np.flatnonzero(starts).astype(POSITION)
    del starts
    first = order[start_at]  # in id order
    start_at[:-1] = start_at[1:] - 1  # now: the last survivor of each id
    if len(start_at):
        start_at[-1] = len(order) - 1
    group_split = codes[order[start_at]]
    del order, start_at
    duplicate = keep.copy()
    duplicate[first] = False  # kept survivors that lose to an earlier record with the same id

    # the size of each split's table: all its spill rows, less those not written, less those written
    # under another split (their id's last record names it), plus those written here from another split
    split_totals = {name: totals.get(name, sizer.empty_totals()) for name in split_names}
    gone = np.flatnonzero(~keep | duplicate).astype(POSITION)
    elsewhere = group_split != codes[first]
    moved, moved_to = first[elsewhere], group_split[elsewhere]
    groups = {}
    for code in range(len(split_names)):
        groups[f"gone-{code}"] = gone[codes[gone] == code]
        groups[f"out-{code}"] = np.sort(moved[codes[moved] == code])
        groups[f"in-{code}"] = np.sort(moved[moved_to == code])
    figures = _totals_of(spill, groups, columns, sizer)
    for code, name in enumerate(split_names):
        split_totals[name] = split_totals[name] - figures[f"gone-{code}"] - figures[f"out-{code}"] + figures[f"in-{code}"]
    del gone, elsewhere, moved, moved_to

    # 2. shards per split, and where each written row goes: its index among all written rows in
    # writing order (split by split, by id within a split), so a shard is a range of indexes
    dest = np.full(len(keep), -1, dtype=POSITION)
    shards: list[tuple[str, int, int]] = []  # (split, index, count) in writing order
    shard_starts: list[int] = []  # write index of each shard's first row; then the total
    split_infos: dict[str, SplitInfo] = {}
    for split in split_order(split_names):
        if split not in split_names:
            continue
        rows = first[group_split == split_names.index(split)]
        if not len(rows):
            continue
        count, step = _shard_count(len(rows), sizer.nbytes_of(split_totals[split]), info.max_shard_bytes)
        written = shard_starts.pop() if shard_starts else 0
        shards += [(split, i, count) for i in range(count)]
        shard_starts += [written + i * step for i in range(count)] + [written + len(rows)]
        dest[rows] = written + np.arange(len(rows), dtype=POSITION)
        split_infos[split] = SplitInfo(records=len(rows), files=[f"data/{shard_name(split, i, count)}" for i in range(count)])
    del first, group_split
    starts = np.asarray(shard_starts, np.int64)

    with staging(out_dir) as tmp:
        (tmp / "data").mkdir()
        # 3. one pass over the spill: rows to their shard's temp file (with their place in it), duplicates to rejects
        parts = [work / f"shard-{i:05d}.arrow" for i in range(len(shards))]
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        dup_file = work / "rejects-write.jsonl"
        # the duplicates' reject lines are made in a thread (in order: one thread) beside the routing,
        # whose arrow and IPC work releases the GIL
        with open(dup_file, "w", encoding="utf-8") as dups, ThreadPoolExecutor(1) as rejecting:
            lines: deque = deque()  # at most two batches of duplicates wait: memory stays bounded, errors surface early
            for at, table in _prefetched(spill.groups(columns)):
                local = dest[at : at + table.num_rows]
                rows = np.flatnonzero(local >= 0)
                shard_of = np.searchsorted(starts, local[rows], side="right") - 1
                by_shard = np.argsort(shard_of, kind="stable")  # rows of a shard together, in spill order (a cheap take)
                rows, shard_of = rows[by_shard], shard_of[by_shard]
                index = local[rows].astype(np.int64)
                cuts = [0, *(np.flatnonzero(np.diff(shard_of)) + 1).tolist(), len(rows)]
                routed = table.take(pa.array(rows)).append_column(PLACE_COL, pa.array((index - starts[shard_of]).astype(np.int32)))
                for lo, hi in itertools.pairwise(cuts):
                    if hi > lo:
                        s = int(shard_of[lo])
                        if s not in writers:
                            writers[s] = pa.ipc.new_file(parts[s], routed.schema, options=TEMP_IPC)
                        writers[s].write_table(routed.slice(lo, hi - lo))
                lost = np.flatnonzero(duplicate[at : at + table.num_rows])
                if len(lost):
                    lines.append(rejecting.submit(_write_duplicates, table.take(pa.array(lost)), dups))
                    by_reason["write/exact_duplicate"] += len(lost)
                    if len(lines) > 2:
                        lines.popleft().result()
                del table, local, routed
            for done in lines:
                done.result()
        for w in writers.values():
            w.close()
        del dest, duplicate
        # 4. each shard: sorted by id, written as the in-memory writer writes it; the card's stats are
        # collected from the shard in memory (in a thread, beside the parquet encoder) instead of read back
        collector = StatsCollector(info.kind)
        names = [shard_name(split, i, count) for split, i, count in shards]
        rows_of = dict(zip(names, np.diff(starts).tolist(), strict=True))
        offsets = dict(zip(sorted(names), np.cumsum([0, *(rows_of[n] for n in sorted(names))]).tolist(), strict=False))
        for s, (split, _i, _count) in enumerate(shards):
            collect = partial(collector.add, split=split, shard=names[s], row_offset=offsets[names[s]])
            _write_shard(parts[s], tmp / "data" / names[s], columns, schema, rows_of[names[s]], collect)
            parts[s].unlink()
        for info_split in split_infos.values():
            info_split.shards = [shard_info(tmp, name) for name in info_split.files]
        with open(tmp / "rejects.jsonl", "wb") as out:
            for f in [*reject_files, dup_file]:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, out)
        for name, path in (extra_paths or {}).items():  # large reports (clusters.jsonl): moved, not read
            shutil.move(path, tmp / name)
        return finish_dataset_dir(tmp, out_dir, split_infos, by_reason, info, partial(render_card, stats=collector.result()))


# the temp files rows are routed to, read back once a column at a time, then deleted: Arrow IPC with
# lz4 buffers takes about half the CPU of parquet (no encoding) for about the same disk space
TEMP_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


class _TempPart:
    """A temp shard part (an Arrow IPC file): one column at a time, batch by batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with pa.OSFile(str(path)) as f:
            self.schema = pa.ipc.open_file(f).schema

    def batches(self, column: str) -> Iterator[pa.Array]:
        """The column's arrays, batch by batch (only its buffers are read)."""
        options = pa.ipc.IpcReadOptions(included_fields=[self.schema.get_field_index(column)])
        with pa.OSFile(str(self.path)) as f:
            reader = pa.ipc.open_file(f, options=options)
            for g in range(reader.num_record_batches):
                yield reader.get_batch(g).column(0)

    def column(self, column: str) -> pa.ChunkedArray:
        return pa.chunked_array(list(self.batches(column)), self.schema.field(column).type)


def _prefetched(groups: Iterator[tuple[int, pa.Table]]) -> Iterator[tuple[int, pa.Table]]:
    """`groups`, the next one read in a thread while the caller works on the current one (parquet
    decoding releases the GIL): one spill part more in memory, the reading off the critical path."""
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(next, groups, None)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(next, groups, None)
            yield item
            del item


def _write_duplicates(rows: pa.Table, out: TextIO) -> None:
    """Reject lines of records whose id an earlier record already has (as the in-memory writer words them)."""
    for row in rows.to_pylist():
        reject = RejectRow(stage="write", reason="exact_duplicate", message=f"same content as record {row['id']}",
                           source=row.get("source"), raw=row)
        out.write(reject.to_json() + "\n")


PLACE_COL = "_place"  # temp shard parts: each row's place in its shard


def _write_shard(part: Path, target: Path, columns: list[str], schema: pa.Schema, rows: int,
                 collect: Callable[[pa.Table], None]) -> None:
    """The `rows` rows of `part` in their places (by id: ids are unique in a shard), one contiguous array
    per column, as the in-memory writer writes a shard; built a column at a time, string columns
    gathered row group by row group (`_gather_strings`), so the shard is in memory about once.
    `collect` gets the shard table while the parquet encoder runs (in a thread: both release the GIL
    for most of their work)."""
    source = _TempPart(part)
    place = source.column(PLACE_COL).to_numpy()
    filled = np.bincount(place, minlength=rows) if len(place) else np.zeros(rows, np.int64)
    if len(place) != rows or len(filled) != rows or (rows and filled.min() != 1):
        raise RuntimeError(f"the routed rows of {target.name} do not fill it")  # a writer bug, never the input's
    del filled
    by_id = np.empty(rows, np.int64)
    by_id[place] = np.arange(rows)
    arrays = []
    for c in columns:
        gathered = _gather_strings(source, c, place) if pa.types.is_string(source.schema.field(c).type) else None
        arrays.append(gathered if gathered is not None else source.column(c).take(by_id).combine_chunks())
    del by_id, place
    table = pa.Table.from_arrays(arrays, names=columns).cast(schema)
    del arrays
    with ThreadPoolExecutor(1) as pool:
        collected = pool.submit(collect, table)
        pq.write_table(table, target, compression="zstd")
        collected.result()


TAKE_BYTES = 32 * 2**20  # string columns up to this size are taken by arrow (faster; the copy is small)


def _offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data bytes) of a string array without nulls."""
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, np.int32, len(arr) + 1, arr.offset * 4).astype(np.int64)
    return off, (np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8))


def _gather_strings(source: _TempPart, column: str, place: np.ndarray) -> pa.Array | None:
    """The column with source row i at `place[i]`, holding one batch of the source at a time beside
    the result (arrow's take holds the whole column twice). None when the column has nulls, is small
    (TAKE_BYTES) or would need 64-bit offsets (the caller then takes). Each string is one slice copy: per-byte numpy index
    arrays cost ~3x more (1M records: ~2 s per shard of 450k rows)."""
    n = len(place)
    lengths = np.empty(n, np.int64)
    at = 0
    for arr in source.batches(column):
        if arr.null_count:
            return None
        off, _ = _offsets(arr)
        lengths[place[at : at + len(arr)]] = np.diff(off)
        at += len(arr)
    if at != n:
        return None
    out_off = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=out_off[1:])
    if out_off[-1] >= 2**31 or out_off[-1] <= TAKE_BYTES:
        return None
    del lengths
    data = bytearray(int(out_off[-1]))
    into = memoryview(data)
    at = 0
    for arr in source.batches(column):
        src_off, src_data = _offsets(arr)
        rows = len(src_off) - 1
        src = memoryview(src_data)
        bounds = src_off.tolist()
        targets = out_off[place[at : at + rows]].tolist()
        for k, to in enumerate(targets):
            a, b = bounds[k], bounds[k + 1]
            into[to : to + b - a] = src[a:b]
        at += rows
    return pa.StringArray.from_buffers(n, pa.py_buffer(out_off.astype(np.int32)), pa.py_buffer(data))


__all__ = ["write_streamed", "write_spill", "SPLIT_COL"]
