"""The spill: surviving rows of the map steps, one parquet row group per input batch, in stream order.
Global steps read back only the columns and rows they need (dedup: candidate texts; the writer: the
rows of one output shard at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class Spill:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer: pq.ParquetWriter | None = None
        self._starts: list[int] = [0]
        self._file: pq.ParquetFile | None = None
        self.schema: pa.Schema | None = None

    def __len__(self) -> int:
        return self._starts[-1]

    def append(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self.schema = table.schema
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="lz4")
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._starts.append(self._starts[-1] + table.num_rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _reader(self) -> pq.ParquetFile:
        self.close()
        if self._file is None:
            self._file = pq.ParquetFile(self.path)
        return self._file

    def groups(self, columns: list[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """(first position, rows) of every row group, in order."""
        if not len(self):
            return
        reader = self._reader()
        for g in range(reader.num_row_groups):
            yield self._starts[g], reader.read_row_group(g, columns=columns)

    def take(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """Rows at `positions` (any order, repeats allowed), only `columns`, in the order asked."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            assert self.schema is not None or not len(self)
            schema = self.schema if self.schema is not None else pa.schema([])
            return pa.table({c: pa.array([], schema.field(c).type) for c in columns}) if self.schema else pa.table({})
        uniq, inverse = np.unique(positions, return_inverse=True)
        reader = self._reader()
        starts = np.asarray(self._starts)
        groups = np.searchsorted(starts, uniq, side="right") - 1
        parts = []
        for g in np.unique(groups).tolist():
            local = uniq[groups == g] - starts[g]
            parts.append(reader.read_row_group(g, columns=columns).take(pa.array(local)))
        got = pa.concat_tables(parts)
        return got.take(pa.array(inverse.reshape(-1)))
