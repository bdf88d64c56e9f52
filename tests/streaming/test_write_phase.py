"""The streaming writer's shortcuts give what the long way gives: row size figures carried in the spill
equal those computed from the rows, and the writer's narrow positions and key list give the same
dataset dir as arrays."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from medmill.builders.streaming.sizes import TableSizer
from medmill.builders.streaming.spill import Spill
from medmill.builders.streaming.write import POSITION, _all_keys, _id_order, _prefetched, _totals_of
from medmill.schemas import KIND_COLUMNS
from medmill.schemas.dataset_dir import ARROW_SCHEMAS


def _rows(kind: str, n: int, rng: random.Random) -> list[dict]:
    schema = ARROW_SCHEMAS[kind]
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": "问" * rng.randint(1, 9)}, {"role": "assistant", "content": "答" * rng.randint(1, 30)}]
        msgs = msgs * rng.randint(1, 3)
        src = {"file": rng.choice(["f", None]), "line": rng.choice([i, None]), "offset": None, "ref": rng.choice(["r", None]),
               "group": None, "builder": "b", "builder_version": "1"}
        row = {"id": str(i), "source": src, "meta": rng.choice(["{}", None]), "text": "字" * rng.randint(1, 50),
               "messages": msgs, "prompt": msgs[:1], "chosen": msgs[1:], "rejected": msgs[1:]}
        rows.append({c: row[c] for c in schema.names})
    return rows


def test_carried_size_columns_give_the_computed_totals(tmp_path) -> None:
    rng = random.Random(4)
    for kind in ("pretrain", "sft", "preference"):
        schema = ARROW_SCHEMAS[kind]
        sizer = TableSizer(schema)
        rows = _rows(kind, 230, rng)
        plain, carried = Spill(tmp_path / f"{kind}-plain.parquet"), Spill(tmp_path / f"{kind}-carried.parquet")
        for at in range(0, len(rows), 50):
            table = pa.Table.from_pylist(rows[at : at + 50], schema=schema)
            sizes = sizer.row_sizes(table)
            back = sizer.from_columns(pa.table(sizer.as_columns(sizes)))
            assert back.data.tolist() == sizes.data.tolist() and back.nulls.tolist() == sizes.nulls.tolist()
            assert back.items.tolist() == sizes.items.tolist()
            plain.append(table)
            with_sizes = table
            for name, column in sizer.as_columns(sizes).items():
                with_sizes = with_sizes.append_column(name, column)
            carried.append(with_sizes)
        groups = {"a": np.array([0, 3, 49, 50, 51, 199, 229]), "b": np.arange(0, 230, 3), "none": np.zeros(0, np.int64)}
        want = _totals_of(plain, groups, KIND_COLUMNS[kind], sizer)
        got = _totals_of(carried, groups, KIND_COLUMNS[kind], sizer)
        for name in groups:
            assert sizer.nbytes_of(got[name]) == sizer.nbytes_of(want[name]), (kind, name)
            assert got[name].rows == want[name].rows and got[name].items.tolist() == want[name].items.tolist()
            assert got[name].null_rows.tolist() == want[name].null_rows.tolist()
        subset = pa.Table.from_pylist([rows[i] for i in groups["b"]], schema=schema)
        assert sizer.nbytes_of(want["b"]) == subset.nbytes


def test_key_list_is_emptied_and_prefetch_keeps_order() -> None:
    parts = [np.array([3, 1], np.uint64), np.array([2], np.uint64)]
    assert _all_keys(parts).tolist() == [3, 1, 2] and parts == []
    assert _all_keys(np.array([5], np.uint64)).tolist() == [5]
    items = [(i, pa.table({"x": [i]})) for i in range(5)]
    assert [at for at, _ in _prefetched(iter(items))] == [0, 1, 2, 3, 4]
    assert list(_prefetched(iter([]))) == []


def test_id_order_of_every_row_equals_the_one_of_all_positions() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 50, 1000).astype(np.uint64)  # many ties: runs of equal keys ordered by id, then position
    ids = [f"{k:03d}-{rng.integers(0, 3)}" for k in keys.tolist()]

    class Ids:
        def take(self, positions, columns):
            return pa.table({"id": [ids[p] for p in positions]})

    every, starts = _id_order(Ids(), keys, None)
    given, given_starts = _id_order(Ids(), keys, np.arange(1000, dtype=POSITION))
    assert every.dtype == POSITION and every.tolist() == given.tolist() and starts.tolist() == given_starts.tolist()
    assert [ids[p] for p in every.tolist()] == sorted(ids, key=lambda i: (int(i[:3]), i))
    assert int(starts.sum()) == len(set(ids))
    some = np.arange(0, 1000, 3, dtype=POSITION)
    order, _ = _id_order(Ids(), keys, some)
    assert sorted(order.tolist()) == some.tolist()
