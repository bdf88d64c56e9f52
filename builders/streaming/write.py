"""The streaming shard writer: the same dataset dir `writer.write_dataset_dir` writes for the same
records (byte-identical shards, the same rejects.jsonl), from the spill, one shard in memory at a time.

What the in-memory writer does, and how it is done here:
- first record of each id wins, later ones become `write/exact_duplicate` rejects: ids of every
  survivor are sorted once (arrow, stable), so groups of equal ids are adjacent;
- a record's split is the split given for its id (the last record with that id says it, as a dict
  update would);
- per split, rows sorted by id are cut into ceil(table bytes / max shard bytes) shards of equal row
  count: table bytes come from per-row size figures (`sizes.py`), so no table is built to count;
- rows are routed from the spill to one temporary file per shard in a single pass, then each shard is
  read, sorted by id and written as the in-memory writer writes it.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

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
from medmill.builders.streaming.batch import SPLIT_COL
from medmill.builders.streaming.sizes import RowSizes, TableSizer
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
    """Write the dataset dir of the spill rows where `keep`; `reject_files` (JSON lines, in order) are
    the rejects so far, `by_reason` their counts. `ids`, `splits`, `sizes` are per spill row;
    `extra_paths` are files moved into the dir under the given names."""
    if info.kind not in ARROW_SCHEMAS:
        raise MedmillError(f"unknown record kind {info.kind!r}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    schema = ARROW_SCHEMAS[info.kind]
    columns = KIND_COLUMNS[info.kind]
    by_reason = Counter(by_reason)

    # 1. unique ids: the first survivor of each id, and the split its last survivor names
    survivors = np.flatnonzero(keep)
    order = pc.sort_indices(ids.take(pa.array(survivors))).to_numpy() if len(survivors) else np.zeros(0, np.int64)
    sorted_ids = ids.take(pa.array(survivors[order])) if len(survivors) else pa.array([], pa.string())
    starts = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        starts[1:] = pc.not_equal(sorted_ids.slice(1), sorted_ids.slice(0, len(order) - 1)).to_numpy(zero_copy_only=False)
    start_at = np.flatnonzero(starts)
    end_at = np.append(start_at[1:], len(order)) if len(start_at) else start_at
    first = survivors[order[start_at]]  # in id order
    last = survivors[order[end_at - 1]]
    split_codes = pc.dictionary_encode(splits).combine_chunks() if isinstance(splits, pa.ChunkedArray) else pc.dictionary_encode(splits)
    names = split_codes.dictionary.to_pylist()
    codes = split_codes.indices.to_numpy(zero_copy_only=False)
    group_split = codes[last] if len(last) else np.zeros(0, np.int64)
    duplicate = keep.copy()
    duplicate[first] = False  # kept survivors that lose to an earlier record with the same id

    # 2. shards per split, and where each written row goes
    sizer = TableSizer(schema)
    dest = np.full(len(keep), -1, dtype=np.int64)
    shards: list[tuple[str, int, int]] = []  # (split, index, count) in writing order
    split_infos: dict[str, SplitInfo] = {}
    for split in split_order(names):
        if split not in names:
            continue
        rows = first[group_split == names.index(split)]
        if not len(rows):
            continue
        count, step = _shard_count(len(rows), sizer.nbytes(sizes.take(rows)), info.max_shard_bytes)
        base = len(shards)
        shards += [(split, i, count) for i in range(count)]
        dest[rows] = base + np.arange(len(rows)) // step
        split_infos[split] = SplitInfo(records=len(rows), files=[f"data/{shard_name(split, i, count)}" for i in range(count)])

    with staging(out_dir) as tmp:
        (tmp / "data").mkdir()
        # 3. one pass over the spill: rows to their shard's temp file, duplicates to rejects
        parts = [work / f"shard-{i:05d}.parquet" for i in range(len(shards))]
        writers: dict[int, pq.ParquetWriter] = {}
        dup_file = work / "rejects-write.jsonl"
        with open(dup_file, "w", encoding="utf-8") as dups:
            for at, table in spill.groups(columns):
                local = dest[at : at + table.num_rows]
                for s in np.unique(local[local >= 0]).tolist():
                    part = table.filter(pa.array(local == s))
                    if s not in writers:
                        writers[s] = pq.ParquetWriter(parts[s], table.schema, compression="lz4")
                    writers[s].write_table(part)
                lost = np.flatnonzero(duplicate[at : at + table.num_rows])
                for row in table.take(pa.array(lost)).to_pylist() if len(lost) else []:
                    reject = RejectRow(stage="write", reason="exact_duplicate", message=f"same content as record {row['id']}",
                                       source=row.get("source"), raw=row)
                    dups.write(reject.to_json() + "\n")
                    by_reason["write/exact_duplicate"] += 1
        for w in writers.values():
            w.close()
        # 4. each shard: sorted by id, written as the in-memory writer writes it
        for s, (split, i, count) in enumerate(shards):
            table = pq.read_table(parts[s])
            table = table.take(pc.sort_indices(table, sort_keys=[("id", "ascending")])).select(columns)
            table = table.cast(schema).combine_chunks()
            pq.write_table(table, tmp / "data" / shard_name(split, i, count), compression="zstd")
            parts[s].unlink()
        for info_split in split_infos.values():
            info_split.shards = [shard_info(tmp, name) for name in info_split.files]
        with open(tmp / "rejects.jsonl", "wb") as out:
            for f in [*reject_files, dup_file]:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, out)
        for name, path in (extra_paths or {}).items():  # large reports (clusters.jsonl): moved, not read
            shutil.move(path, tmp / name)
        return finish_dataset_dir(tmp, out_dir, split_infos, by_reason, info, render_card)


__all__ = ["write_streamed", "SPLIT_COL"]
