"""The spill: surviving rows of the map steps in stream order, as parquet part files of one row group
each (one per input batch). A local worker writes its batch's part itself (`write_part`, then the
driver `add_part`s it), so rows never travel between processes; a remote result is `append`ed by the
driver. Global steps read back only the columns and rows they need (dedup: candidate texts; the writer:
one part at a time)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SPILL_COMPRESSION = "lz4"


def part_path(base: Path, seq: int) -> Path:
    """Where the part of input batch `seq` of the spill at `base` goes."""
    base = Path(base)
    return base.with_name(f"{base.stem}-{seq:06d}.parquet")


def write_part(path: Path, table: pa.Table) -> None:
    """One spill part: `table` as a single row group."""
    pq.write_table(table, path, compression=SPILL_COMPRESSION, row_group_size=max(1, table.num_rows))


class Spill:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._parts: list[Path] = []
        self._starts: list[int] = [0]
        self._files: dict[int, pq.ParquetFile] = {}
        self._pid = os.getpid()
        self.schema: pa.Schema | None = None

    def __len__(self) -> int:
        return self._starts[-1]

    def __getstate__(self) -> dict:
        """Pickled without its open files (another process opens its own)."""
        return {**self.__dict__, "_files": {}}

    def part_path(self, seq: int) -> Path:
        """Where the part of input batch `seq` is written."""
        return part_path(self.path, seq)

    def append(self, table: pa.Table, seq: int | None = None) -> None:
        """Rows written here, as the next part."""
        if table.num_rows == 0:
            return
        path = self.part_path(len(self._parts) if seq is None else seq)
        write_part(path, table)
        self._add(path, table.num_rows, table.schema)

    def add_part(self, path: Path, rows: int) -> None:
        """A part a worker wrote (`write_part`), as the next part; an empty batch writes none."""
        if rows:
            self._add(Path(path), rows, None)

    def _add(self, path: Path, rows: int, schema: pa.Schema | None) -> None:
        self._parts.append(path)
        self._starts.append(self._starts[-1] + rows)
        if self.schema is None:
            self.schema = schema if schema is not None else pq.read_schema(path)

    def close(self) -> None:
        self._files.clear()

    def _file(self, k: int) -> pq.ParquetFile:
        if self._pid != os.getpid():  # a forked worker opens its own files
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(k)
        if f is None:
            f = self._files[k] = pq.ParquetFile(self._parts[k])
        return f

    def groups(self, columns: list[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """(first position, rows) of every part, in order."""
        for k, path in enumerate(self._parts):
            yield self._starts[k], pq.ParquetFile(path).read(columns=columns)

    def scan(self, positions: np.ndarray, columns: list[str], parts: tuple[int, int] | None = None) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """(positions, their rows) part by part, for ascending unique `positions`: every part is read
        at most once (a `take` reads each part it touches; many takes read the spill many times). With
        `parts` (k0, k1), only parts k0..k1-1, each opened afresh (for a forked worker)."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return
        starts = np.asarray(self._starts)
        bounds = np.searchsorted(positions, starts)
        k0, k1 = parts if parts is not None else (0, len(self._parts))
        for k in range(k0, k1):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if lo < hi:
                local = positions[lo:hi] - starts[k]
                yield positions[lo:hi], self._file(k).read(columns=columns).take(pa.array(local))

    def part_ranges(self, positions: np.ndarray, per_range: int) -> list[tuple[int, int]]:
        """Runs of whole parts holding about `per_range` of the ascending `positions` each (the ranges
        forked workers `scan`), covering every part."""
        if not self._parts:
            return []
        before = np.searchsorted(np.asarray(positions, dtype=np.int64), np.asarray(self._starts))  # positions before each part
        out, k0 = [], 0
        for k in range(1, len(self._parts) + 1):
            if k == len(self._parts) or before[k] - before[k0] >= per_range:
                out.append((k0, k))
                k0 = k
        return out

    def take(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """Rows at `positions` (any order, repeats allowed), only `columns`, in the order asked."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            if self.schema is None:
                return pa.table({})
            return pa.table({c: pa.array([], self.schema.field(c).type) for c in columns})
        uniq, inverse = np.unique(positions, return_inverse=True)
        starts = np.asarray(self._starts)
        parts_of = np.searchsorted(starts, uniq, side="right") - 1
        pieces = []
        for k in np.unique(parts_of).tolist():
            local = uniq[parts_of == k] - starts[k]
            pieces.append(self._file(k).read(columns=columns).take(pa.array(local)))
        got = pa.concat_tables(pieces)
        return got.take(pa.array(inverse.reshape(-1)))
