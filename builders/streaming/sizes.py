"""How many bytes an arrow table of a subset of rows will take (`pa.Table.nbytes` of the table the
in-memory writer builds), from small per-row figures, so the streaming writer cuts the same number of
shards without building the table.

For a freshly built table, every node of the type tree (a column, a struct field, a list's items)
costs: a validity bitmap of ceil(N / 8) bytes when it holds a null, N x 4 offset bytes (as `nbytes` counts them) when it
is a string or a list, and its data (string bytes, 8 bytes per int64). N is the rows for top-level
nodes and struct fields, the total item count for a list's items. Per row we keep: data bytes over
all nodes, item count per list node, and a bitmask of the nodes where this row has a null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIZE_DATA_COL, SIZE_NULLS_COL, SIZE_ITEMS_PREFIX = "_size_data", "_size_nulls", "_size_items_"


@dataclass(frozen=True)
class _Node:
    path: str
    type: pa.DataType
    list_depth: int  # 0: one value per row; 1: one per item of the enclosing list
    list_index: int  # which list node counts this node's values (-1: rows)


def _nodes(schema: pa.Schema) -> tuple[list[_Node], list[str]]:
    nodes: list[_Node] = []
    lists: list[str] = []

    def walk(path: str, typ: pa.DataType, depth: int, list_index: int) -> None:
        nodes.append(_Node(path, typ, depth, list_index))
        if pa.types.is_struct(typ):
            for i in range(typ.num_fields):
                f = typ.field(i)
                walk(f"{path}.{f.name}", f.type, depth, list_index)
        elif pa.types.is_list(typ):
            if depth:
                raise ValueError(f"nested lists are not supported: {path}")
            lists.append(path)
            walk(f"{path}[]", typ.value_type, depth + 1, len(lists) - 1)
        elif not (pa.types.is_string(typ) or pa.types.is_int64(typ)):
            raise ValueError(f"unsupported column type {typ} at {path}")

    for f in schema:
        walk(f.name, f.type, 0, -1)
    if len(nodes) > 63:
        raise ValueError("too many nodes for a 64-bit null mask")
    return nodes, lists


@dataclass
class RowSizes:
    """Per-row figures of one batch (arrays of equal length)."""

    data: np.ndarray  # int64 bytes of data of the row, all nodes
    items: np.ndarray  # (rows, lists) int64 item count per list node
    nulls: np.ndarray  # uint64 bitmask: nodes where the row has a null

    @staticmethod
    def concat(parts: list[RowSizes], n_lists: int) -> RowSizes:
        if not parts:
            return RowSizes(np.zeros(0, np.int64), np.zeros((0, n_lists), np.int64), np.zeros(0, np.uint64))
        return RowSizes(
            np.concatenate([p.data for p in parts]),
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.nulls for p in parts]),
        )

    def take(self, positions: np.ndarray) -> RowSizes:
        return RowSizes(self.data[positions], self.items[positions], self.nulls[positions])


@dataclass
class SizeTotals:
    """What `TableSizer.nbytes` needs of a set of rows, summed: rows, data bytes, items per list node and
    rows with a null per node. Totals add and subtract, so a writer keeps them per split instead of
    per-row figures."""

    rows: int
    data: int
    items: np.ndarray  # (lists,) int64
    null_rows: np.ndarray  # (nodes,) int64

    def __add__(self, other: SizeTotals) -> SizeTotals:
        return SizeTotals(self.rows + other.rows, self.data + other.data, self.items + other.items, self.null_rows + other.null_rows)

    def __sub__(self, other: SizeTotals) -> SizeTotals:
        return SizeTotals(self.rows - other.rows, self.data - other.data, self.items - other.items, self.null_rows - other.null_rows)


class TableSizer:
    """Row figures for a schema, and the table size of any subset of rows."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.nodes, self.lists = _nodes(schema)

    def row_sizes(self, table: pa.Table) -> RowSizes:
        n = table.num_rows
        data = np.zeros(n, np.int64)
        items = np.zeros((n, len(self.lists)), np.int64)
        nulls = np.zeros(n, np.uint64)
        arrays: dict[str, pa.Array] = {}
        parents: dict[int, np.ndarray] = {}  # list index -> row of each item
        for bit, node in enumerate(self.nodes):
            arr = self._array(table, node, arrays)
            owner = parents.get(node.list_index) if node.list_depth else None
            if pa.types.is_list(node.type):
                li = self.lists.index(node.path)
                items[:, li] = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
                parents[li] = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
            if pa.types.is_string(node.type):
                per_value = pc.fill_null(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            elif pa.types.is_int64(node.type):
                per_value = np.full(len(arr), 8, np.int64)
            else:
                per_value = None
            if per_value is not None:
                data += per_value if owner is None else np.bincount(owner, weights=per_value, minlength=n).astype(np.int64)
            if arr.null_count:
                isnull = pc.is_null(arr).to_numpy(zero_copy_only=False)
                rows_with = isnull if owner is None else np.bincount(owner, weights=isnull, minlength=n) > 0
                nulls[rows_with] |= np.uint64(1 << bit)
        return RowSizes(data, items, nulls)

    def _array(self, table: pa.Table, node: _Node, arrays: dict[str, pa.Array]) -> pa.Array:
        if node.path in arrays:
            return arrays[node.path]
        if "." not in node.path and not node.path.endswith("[]"):
            arr = table.column(node.path).combine_chunks()
        elif node.path.endswith("[]"):
            arr = arrays[node.path[:-2]].flatten()
        else:
            parent, name = node.path.rsplit(".", 1)
            arr = arrays[parent].field(name)
        arrays[node.path] = arr
        return arr

    @property
    def column_names(self) -> list[str]:
        """Spill columns that carry each row's figures (`as_columns`), so a writer reads those instead
        of the rows."""
        return [SIZE_DATA_COL, SIZE_NULLS_COL, *(f"{SIZE_ITEMS_PREFIX}{i}" for i in range(len(self.lists)))]

    def as_columns(self, sizes: RowSizes) -> dict[str, pa.Array]:
        """`sizes` as spill columns (12 B per row and 8 B per list node; `from_columns` reads them back)."""
        out = {SIZE_DATA_COL: pa.array(sizes.data, pa.int64()), SIZE_NULLS_COL: pa.array(sizes.nulls, pa.uint64())}
        for i in range(len(self.lists)):
            out[f"{SIZE_ITEMS_PREFIX}{i}"] = pa.array(sizes.items[:, i], pa.int64())
        return out

    def from_columns(self, table: pa.Table) -> RowSizes:
        """The figures `as_columns` put in `table`."""
        def col(name: str) -> np.ndarray:
            return table.column(name).to_numpy()

        items = np.stack([col(f"{SIZE_ITEMS_PREFIX}{i}") for i in range(len(self.lists))], axis=1) if self.lists else np.zeros(
            (table.num_rows, 0), np.int64)
        return RowSizes(col(SIZE_DATA_COL).astype(np.int64), items.astype(np.int64), col(SIZE_NULLS_COL).astype(np.uint64))

    def empty_totals(self) -> SizeTotals:
        return SizeTotals(0, 0, np.zeros(len(self.lists), np.int64), np.zeros(len(self.nodes), np.int64))

    def totals(self, sizes: RowSizes) -> SizeTotals:
        rows = len(sizes.data)
        if not rows:
            return self.empty_totals()
        null_rows = np.array([int(np.count_nonzero(sizes.nulls & np.uint64(1 << bit))) for bit in range(len(self.nodes))], np.int64)
        return SizeTotals(rows, int(sizes.data.sum()), sizes.items.sum(axis=0).astype(np.int64), null_rows)

    def nbytes(self, sizes: RowSizes) -> int:
        """`pa.Table.nbytes` of the table made of exactly these rows."""
        return self.nbytes_of(self.totals(sizes))

    def nbytes_of(self, totals: SizeTotals) -> int:
        """`pa.Table.nbytes` of the table made of the rows these totals sum."""
        total = totals.data
        for bit, node in enumerate(self.nodes):
            count = int(totals.items[node.list_index]) if node.list_depth else totals.rows
            if pa.types.is_string(node.type) or pa.types.is_list(node.type):
                total += count * 4  # arrow counts the offsets a table references: 4 bytes per value
            if totals.null_rows[bit] > 0:
                total += math.ceil(count / 8)
        return int(total)
