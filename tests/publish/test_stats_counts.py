"""Length distributions held as value counts give numpy's figures on the per-record array, and stats
collected shard by shard in any order equal `compute_stats` reading the dir."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medmill.builders.publish import stats as st
from medmill.schemas.dataset_dir import ARROW_SCHEMAS


def _per_record_figures(values: np.ndarray, q: float) -> int:
    return int(np.quantile(values, q))


def test_counts_equal_numpy_on_the_records() -> None:
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 400))
        spread = int(rng.choice([2, 5, 50, 3000]))
        values = rng.integers(0, spread, n).astype(np.int32)
        dist = st.Distribution(values)
        assert dist.count == n
        for q in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0, float(rng.random())):
            assert dist.quantile(q) == _per_record_figures(values, q), (trial, q)
        assert dist.mean == float(values.mean())
        lo = int(values.min())
        hi = max(int(np.quantile(values, 0.99)), lo + 1)
        counts, edges = np.histogram(np.clip(values, None, hi), bins=30, range=(lo, hi))
        assert dist.histogram() == ([int(c) for c in counts], [float(e) for e in edges])
        assert dist.summary()["min"] == lo and dist.summary()["max"] == int(values.max())


def test_value_counts_add_up_batch_by_batch() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 90, 5000).astype(np.int32)
    vc = st.ValueCounts()
    for part in np.array_split(values, 7):
        vc.add(part)
    whole = st.Distribution(values)
    assert vc.distribution().values.tolist() == whole.values.tolist()
    assert vc.distribution().counts.tolist() == whole.counts.tolist()
    assert st.Distribution(np.zeros(0, np.int32)).summary()["max"] == 0


def _write_dir(root, sizes: dict[str, int]) -> dict[str, pa.Table]:
    """Shards of pretrain rows with varied texts and metas; returns {file name: table}."""
    schema = ARROW_SCHEMAS["pretrain"]
    (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(11)
    tables = {}
    for name, n in sizes.items():
        rows = []
        for i in range(n):
            text = "病" * int(rng.integers(1, 40)) + " abc 12" * int(rng.integers(0, 3))
            chapter = "一二三四"[int(rng.integers(0, 4))]
            meta = json.dumps({"chapter": chapter} if rng.random() < 0.8 else {"section": f"x{i % 3}"}, ensure_ascii=False)
            rows.append({"id": f"{name}-{i}", "text": text, "source": {"builder": "t", "builder_version": "1"}, "meta": meta})
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, root / "data" / name)
        tables[name] = table
    return tables


def test_collector_in_writing_order_equals_compute_stats(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(st, "MAX_META_ROWS", 500)  # the category window ends inside the second shard
    monkeypatch.setattr(st, "STATS_BATCH_ROWS", 64)
    sizes = {"test-00000-of-00001.parquet": 300, "train-00000-of-00002.parquet": 350, "train-00001-of-00002.parquet": 200,
             "validation-00000-of-00001.parquet": 120}
    tables = _write_dir(tmp_path, sizes)
    want = st.compute_stats(tmp_path, "pretrain")
    offsets, at = {}, 0
    for name in sorted(sizes):
        offsets[name] = at
        at += sizes[name]
    collector = st.StatsCollector("pretrain")
    for name in ["validation-00000-of-00001.parquet", "train-00001-of-00002.parquet", "train-00000-of-00002.parquet",
                 "test-00000-of-00001.parquet"]:  # not in file-name order, one in two slices
        table = tables[name]
        if name.startswith("train-00000"):
            collector.add(table.slice(0, 100), "train", name, offsets[name])
            collector.add(table.slice(100), "train", name, offsets[name] + 100)
        else:
            collector.add(table, name.split("-")[0], name, offsets[name])
    got = collector.result()
    assert list(got.records.items()) == list(want.records.items()) == [("test", 300), ("train", 550), ("validation", 120)]
    assert got.meta_rows_read == want.meta_rows_read == 500 and "chapter" in want.categories
    assert got.categories == want.categories and list(got.categories) == list(want.categories)
    assert all(list(got.categories[k]) == list(want.categories[k]) for k in want.categories)
    for name in want.chars:
        assert got.chars[name].summary() == want.chars[name].summary()
        assert got.tokens[name].histogram() == want.tokens[name].histogram()
    every = pa.concat_tables(tables.values())
    texts = every.column("text")
    assert want.chars["text"].summary()["p90"] == int(np.quantile(pa.compute.utf8_length(texts).to_numpy(), 0.9))
    assert want.tokens["text"].mean == float(st.token_proxy(texts.combine_chunks()).mean())
