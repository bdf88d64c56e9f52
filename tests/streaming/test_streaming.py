"""Streamed `filter` / `dedup` write exactly what the in-memory path writes (sha256 of every file), with
1 process or several, one batch or many, one shard or many; and the pieces that make that possible
(table size from row figures, stats merging, the compact dedup decision) agree with their in-memory
counterparts."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medmill.builders.curation.dedup import DedupConfig, Reference, decide, find_duplicates
from medmill.builders.curation.dedup_state import DedupState, batch_state
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.streaming.sizes import RowSizes, TableSizer
from medmill.builders.streaming.stats import merge_stats
from medmill.cli import _register, app
from medmill.commands._curate_dirs import run_over_dirs
from medmill.commands._run_options import RunOptions
from medmill.schemas.dataset_dir import ARROW_SCHEMAS
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import stable_id

_register()

CLAUSES = ["高血压是心内科常见病", "典型表现为头痛、头晕", "治疗常用硝苯地平", "疗程约{n}天", "患者应低盐低脂饮食",
           "复查时应检查血常规", "老年人出现胸闷时更要重视", "孕妇使用阿司匹林前须咨询医生", "糖尿病可并发肾病",
           "每日剂量不宜超过{n}毫克", "儿童肺炎多由感染诱发", "症状缓解后仍需定期复查", "饮食上应戒烟限酒"]


def _text(rng: random.Random) -> str:
    return "，".join(c.format(n=rng.randint(1, 999)) for c in rng.sample(CLAUSES, 5)) + "。"


def _source(i: int, split: str) -> dict:
    return {"file": f"{split}.jsonl", "line": i, "offset": None, "ref": None if i % 3 else f"r{i}", "group": f"g{i // 3}",
            "builder": "t", "builder_version": "1"}


def _corpus(rng: random.Random, n: int, kind: str, split: str) -> list[dict]:
    rows: list[dict] = []
    for i in range(n):
        roll = rng.random()
        if rows and roll < 0.08:
            row = dict(rng.choice(rows))  # same id (and maybe other meta) again
            row["meta"] = json.dumps({"copy": i})
            rows.append(row)
            continue
        text = _text(rng)
        if rows and roll < 0.2:  # near-duplicate of an earlier text
            base = rng.choice(rows)
            base_text = base["text"] if kind == "pretrain" else base["messages"][-1]["content"]
            text = base_text[:-3] + "治疗。"
        elif roll < 0.25:
            text += f"联系电话13{rng.randint(100000000, 999999999)}"
        elif roll < 0.27:
            text = "无"
        elif roll < 0.29:
            text += "哪里买冰毒"
        if kind == "pretrain":
            rows.append({"id": stable_id("pretrain", text), "text": text, "source": _source(i, split), "meta": "{}"})
        else:
            msgs = [{"role": "user", "content": f"问题{i % 7}怎么办？"}, {"role": "assistant", "content": text}]
            rows.append({"id": stable_id("sft", msgs), "messages": msgs, "source": _source(i, split), "meta": '{"topic": "t"}'})
    return rows


def make_input(path: Path, kind: str, seed: int, sizes: dict[str, int], broken: bool = False) -> Path:
    rng = random.Random(seed)
    (path / "data").mkdir(parents=True)
    for split, n in sizes.items():
        rows = _corpus(rng, n, kind, split)
        if broken and kind == "sft":  # an assistant-first conversation and a broken meta: read rejects
            rows[3] = {**rows[3], "messages": [{"role": "assistant", "content": "先回答"}]}
            rows[4] = {**rows[4], "meta": "{not json"}
        rows[5] = {**rows[5], "meta": ""}  # empty meta reads as {}
        rows[6] = {**rows[6], "meta": '{"source_dir": "elsewhere", "k": [1, 2]}'}
        half = len(rows) // 2
        for k, part in enumerate((rows[:half], rows[half:])):
            pq.write_table(pa.Table.from_pylist(part, schema=ARROW_SCHEMAS[kind]), path / f"data/{split}-{k:05d}-of-00002.parquet")
    (path / "manifest.json").write_text(json.dumps({"kind": kind, "license": "cc-by-4.0"}), encoding="utf-8")
    return path


def digest(out: Path) -> dict[str, str]:
    """sha256 of every file of a dataset dir; manifest.json and README.md without timings and the command line."""
    result = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file() and ".sqlite" not in p.name):  # not the LLM cache
        data = f.read_bytes()
        if f.name == "manifest.json":
            m = json.loads(data)
            m.pop("timings")
            m.pop("command")
            m.get("usage", {}).pop("wall_time_s", None)  # LLM builds: wall time of the calls
            data = json.dumps(m, sort_keys=True).encode()
        elif f.name == "README.md":
            data = re.sub(rb"wall_time_s=[0-9.]+", b"", b"\n".join(line for line in data.splitlines() if b"- Command:" not in line))
        result[str(f.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return result


FILTER = CurationSettings(validate_records=False, dedup=False, decontaminate=[])


def dedup_steps(kind: str, clusters_file: bool = True) -> list:
    """The step `medmill dedup` adds (what every executor runs)."""
    from medmill.builders.curation.inputs import origin_of
    from medmill.builders.curation.stages import DedupStep
    from medmill.builders.curation.text import check_fields

    return [DedupStep(check_fields(kind, []), DedupConfig(), None, origin_of, clusters_file=clusters_file)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("inputs")
    return {
        "sft": [make_input(root / "a", "sft", 1, {"train": 700, "validation": 60}, broken=True),
                make_input(root / "b", "sft", 2, {"train": 400, "test": 40})],
        "pretrain": [make_input(root / "p", "pretrain", 3, {"train": 900, "validation": 90})],
    }


# sft ~4-5 s each: the fast lane keeps pretrain (tests/streaming/test_columnar.py has tricky sft rows)
@pytest.mark.parametrize("kind", [pytest.param("sft", marks=pytest.mark.slow), "pretrain"])
@pytest.mark.parametrize("command", ["filter", "dedup"])
def test_streamed_equals_in_memory(inputs, tmp_path, monkeypatch, kind, command):
    from medmill.builders.core.steps import LocalExecutor

    # the in-memory executor writes map-step rejects per chunk of records; small chunks test that order
    monkeypatch.setattr(LocalExecutor.__init__, "__defaults__", (300,))
    dirs = inputs[kind]
    settings = FILTER if command == "filter" else CurationSettings(validate_records=False, quality=False, pii=False,
                                                                   safety=False, dedup=False)
    extra = {} if command == "filter" else {"extra_steps": dedup_steps}
    max_bytes = 40_000  # several shards per split
    base = tmp_path / "memory"
    run_over_dirs(command, dirs, base, settings, {}, run=RunOptions("memory", max_shard_bytes=max_bytes), **extra)
    expected = digest(base)
    assert len([f for f in expected if f.startswith("data/train-")]) > 1
    rejects = (base / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert rejects, "the corpus must make rejects"
    if command == "dedup":
        assert any('"near_duplicate"' in r for r in rejects) and any('"exact_duplicate"' in r for r in rejects)
    for workers, batch_rows in [(1, 100_000), (1, 97), (2, 128)]:
        out = tmp_path / f"stream-{workers}-{batch_rows}"
        run_over_dirs(command, dirs, out, settings, {},
                      run=RunOptions("local", workers, batch_rows=batch_rows, max_shard_bytes=max_bytes), **extra)
        assert digest(out) == expected, (workers, batch_rows)


def test_cli_streamed_equals_memory_with_read_rejects(inputs, tmp_path):
    runner = CliRunner()
    outs = {}
    for ex in ("memory", "local"):
        outs[ex] = tmp_path / ex
        r = runner.invoke(app, ["filter", *map(str, inputs["sft"]), "--out", str(outs[ex]), "--executor", ex, "--workers", "2"])
        assert r.exit_code == 0, r.output
    assert digest(outs["memory"]) == digest(outs["local"])
    assert '"stage": "read"' in (outs["local"] / "rejects.jsonl").read_text(encoding="utf-8")
    assert "records/s quality" in r.output


def test_streamed_dedup_of_a_kg_dir_guards_the_facts_its_records_carry(tmp_path):
    """KG records carry their entities and values in meta; the in-memory dedup adds them to the fact
    guard's protected terms, and so must the streamed one (it did not: 43 of 598 KG QA records that
    differ only in a fact were dropped as near-duplicates at --threshold 0.3)."""
    runner = CliRunner()
    kg = tmp_path / "kg"
    examples = Path(__file__).resolve().parents[2] / "examples" / "kg"
    r = runner.invoke(app, ["build-kg-qa", str(examples), "--out", str(kg), "--no-dedup"])
    assert r.exit_code == 0, r.output
    outs = {}
    for ex in ("memory", "local"):
        outs[ex] = tmp_path / ex
        r = runner.invoke(app, ["dedup", str(kg), "--out", str(outs[ex]), "--executor", ex, "--threshold", "0.3"])
        assert r.exit_code == 0, r.output
    manifests = {ex: json.loads((o / "manifest.json").read_text(encoding="utf-8")) for ex, o in outs.items()}
    assert manifests["local"]["curation"]["dedup"]["protected_terms"] > 0
    assert manifests["local"]["curation"]["dedup"]["fact_guarded_pairs"] > 0
    assert digest(outs["memory"]) == digest(outs["local"])


def test_bad_executor_is_one_line_error(inputs, tmp_path):
    r = CliRunner().invoke(app, ["dedup", str(inputs["pretrain"][0]), "--out", str(tmp_path / "o"), "--executor", "spark"])
    assert isinstance(r.exception, MedmillError) and "--executor must be one of" in str(r.exception)


def test_table_size_from_row_figures():
    rng = random.Random(0)
    for kind in ("pretrain", "sft", "preference"):
        schema = ARROW_SCHEMAS[kind]
        sizer = TableSizer(schema)
        rows = []
        for i in range(300):
            msgs = [{"role": "user", "content": "问" * rng.randint(1, 9)}, {"role": "assistant", "content": "答" * rng.randint(1, 30)}]
            src = {"file": rng.choice(["f", None]), "line": rng.choice([i, None]), "offset": None, "ref": rng.choice(["r", None]),
                   "group": None, "builder": "b", "builder_version": "1"}
            row = {"id": str(i), "source": src, "meta": "{}", "text": "字" * rng.randint(1, 50),
                   "messages": msgs, "prompt": msgs[:1], "chosen": msgs[1:], "rejected": msgs[1:]}
            rows.append({c: row[c] for c in schema.names})
        parts = [sizer.row_sizes(pa.Table.from_pylist(rows[i : i + 41], schema=schema)) for i in range(0, 300, 41)]
        figures = RowSizes.concat(parts, len(sizer.lists))
        for subset in (np.arange(300), np.arange(0, 300, 7), np.array([4]), np.zeros(0, np.int64)):
            table = pa.Table.from_pylist([rows[i] for i in subset], schema=schema)
            assert sizer.nbytes(figures.take(subset)) == table.nbytes, (kind, len(subset))


def test_merge_stats_sums_counts_and_keeps_sorted_counter_keys():
    a = {"action": "redact", "found.PHONE": 1, "records_redacted": 1}
    for b in ({"action": "redact", "found.EMAIL": 2, "records_redacted": 2}, {"action": "redact", "found.URL": 1, "records_redacted": 1}):
        a = merge_stats(a, b)
    assert list(a) == ["action", "found.EMAIL", "found.PHONE", "found.URL", "records_redacted"]
    assert a["records_redacted"] == 4
    d = merge_stats({"eval_texts": 5, "ngram": 13, "removed": 1}, {"eval_texts": 5, "ngram": 13, "removed": 2})
    assert d == {"eval_texts": 5, "ngram": 13, "removed": 3}


def test_compact_decision_equals_find_duplicates():
    rng = random.Random(5)
    texts = [_text(rng) for _ in range(1500)]
    texts += [t[:-4] + "呢。" for t in texts[:300]] + texts[100:160] + ["？？", "a", "？？"]
    rng.shuffle(texts)
    cfg = DedupConfig(workers=1)
    ref_res = find_duplicates(texts[:200], cfg)
    keep = ref_res.keep
    reference = Reference(ref_res.keys[keep], ref_res.sigs[keep], [t for t, k in zip(texts[:200], keep, strict=True) if k])
    for ref in (None, reference):
        want = find_duplicates(texts[200:], cfg, ref)
        state = DedupState(cfg)
        for s in range(0, len(texts) - 200, 333):
            state.add(batch_state(texts[200 + s : 200 + s + 333], cfg))
        arr = pa.array(texts[200:])
        got = decide(*state.arrays(), cfg, lambda pos, arr=arr: arr.take(pa.array(pos)), ref)
        assert (got.dup_of == want.dup_of).all() and (got.similarity == want.similarity).all()
        assert got.stats == want.stats and want.stats["near_duplicates"] > 100


def test_streamed_decontamination_equals_in_memory(inputs, tmp_path):
    """Decontamination is a global step in memory; streamed it judges batch by batch and its rejects
    still come after every map step's."""
    rows = pq.read_table(next((inputs["pretrain"][0] / "data").glob("train-*.parquet"))).to_pylist()
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"question": r["text"]}, ensure_ascii=False) + "\n" for r in rows[10:40]), encoding="utf-8")
    settings = CurationSettings(validate_records=False, dedup=False, decontaminate=[eval_file])
    outs = {}
    for ex, workers in (("memory", 1), ("local", 2)):
        outs[ex] = tmp_path / ex
        run_over_dirs("filter", inputs["pretrain"], outs[ex], settings, {}, run=RunOptions(ex, workers, batch_rows=111))
    assert digest(outs["local"]) == digest(outs["memory"])
    assert '"decontaminate"' in (outs["local"] / "rejects.jsonl").read_text(encoding="utf-8")


def test_streamed_run_that_keeps_nothing_writes_its_rejects_and_fails_like_in_memory(inputs, tmp_path):
    """Both leave --out as it was (here: absent) and write the same rejects beside it."""
    settings = CurationSettings(validate_records=False, dedup=False, min_chars=10_000, max_chars=20_000)
    outs = {}
    for ex in ("memory", "local"):
        outs[ex] = tmp_path / ex
        with pytest.raises(MedmillError, match="no records survived.*was left as it was"):
            run_over_dirs("filter", inputs["pretrain"], outs[ex], settings, {}, run=RunOptions(ex, 2, batch_rows=200))
        assert not outs[ex].exists()
    beside = {ex: (tmp_path / f"{ex}.rejects.jsonl").read_bytes() for ex in outs}
    assert beside["local"] == beside["memory"] and beside["local"].count(b"\n") > 100


def test_id_keys_order_ids_as_strings():
    from medmill.builders.streaming.keys import id_keys

    ids = ["ab", "ab\x00", "abcdefgh", "abcdefghi", "abcdefgg中", "中文", "z" * 30, "abc", "a", "ÿ", "ab\x00\x01"]
    keys = id_keys(pa.array(["pad", *ids]).slice(1))  # a sliced array: the offset counts
    for a, ka in zip(ids, keys, strict=True):
        for b, kb in zip(ids, keys, strict=True):
            assert (ka < kb) <= (a < b) and (ka > kb) <= (a > b), (a, b)  # keys never contradict the strings


def test_streamed_writer_orders_ids_sharing_a_key_and_moves_ids_across_splits(tmp_path):
    """Ids that share their first 8 bytes (tied sort keys), short ids, and ids repeated across splits
    (the last record names the split; the first record's content is kept; the table sizes of both
    splits change, and with them the shard counts) give the in-memory writer's dataset dir."""
    rng = random.Random(7)
    src = lambda i, split: _source(i, split)  # noqa: E731
    rows: dict[str, list[dict]] = {"train": [], "validation": []}
    prefixes = ["sharedid", "sharedie", "x", "中文前缀"]
    for split, n in (("train", 500), ("validation", 120)):
        for i in range(n):
            rid = f"{rng.choice(prefixes)}{rng.randint(0, 60)}" if rng.random() < 0.7 else stable_id("pretrain", f"{split}{i}")
            rows[split].append({"id": rid, "text": _text(rng) * rng.randint(1, 4), "source": src(i, split), "meta": "{}"})
    rows["validation"] += [dict(r, meta='{"again": 1}') for r in rows["train"][:40]]  # ids of train again, later
    root = tmp_path / "in"
    (root / "data").mkdir(parents=True)
    for split, part in rows.items():
        pq.write_table(pa.Table.from_pylist(part, schema=ARROW_SCHEMAS["pretrain"]), root / f"data/{split}-00000-of-00001.parquet")
    (root / "manifest.json").write_text(json.dumps({"kind": "pretrain", "license": "cc-by-4.0"}), encoding="utf-8")
    settings = CurationSettings(validate_records=False, dedup=False, quality=False, pii=False, safety=False, decontaminate=[])
    base = tmp_path / "memory"
    run_over_dirs("filter", [root], base, settings, {}, run=RunOptions("memory", max_shard_bytes=20_000))
    expected = digest(base)
    assert len([f for f in expected if f.startswith("data/validation-")]) > 1
    assert b"exact_duplicate" in (base / "rejects.jsonl").read_bytes()
    for workers, batch_rows in [(1, 1000), (2, 61)]:
        out = tmp_path / f"stream-{workers}"
        run_over_dirs("filter", [root], out, settings, {}, run=RunOptions("local", workers, batch_rows=batch_rows, max_shard_bytes=20_000))
        assert digest(out) == expected, workers


def test_rows_to_table_equals_from_pylist():
    """The batch's column-wise table builder gives from_pylist's table: nulls at every level, absent
    and extra keys, empty lists."""
    from medmill.builders.streaming.arrow_rows import rows_to_table

    rng = random.Random(3)
    for kind, schema in ARROW_SCHEMAS.items():
        rows = []
        for i in range(400):
            msgs = None if rng.random() < 0.1 else [
                None if rng.random() < 0.05 else {"role": rng.choice(["user", None]), "content": "答" * rng.randint(0, 5)}
                for _ in range(rng.randint(0, 3))]
            src = None if rng.random() < 0.1 else {"file": rng.choice(["f", None]), "line": rng.choice([i, None]), "builder": "b"}
            rows.append({"id": str(i), "text": rng.choice(["t", None, ""]), "messages": msgs, "prompt": msgs, "chosen": msgs,
                         "rejected": [], "source": src, "meta": "{}", "extra": 1})
        got, want = rows_to_table(rows, schema), pa.Table.from_pylist(rows, schema=schema)
        assert got.schema.equals(want.schema) and got.equals(want), kind


def test_read_plan_slices_cover_every_row_once_in_order(tmp_path):
    """Workers read their own slices: over shards of several row groups the slices give every row once,
    in `iter_batches` order, each with the row number its rejects name. `plan_batches` (what the local
    executor hands its workers) reads a shard whose row groups are far larger than a batch in the driver,
    in one pass, instead of letting every slice decode the whole group again; same rows, same order."""
    from medmill.builders.streaming.inputs import (
        InputBatch,
        iter_batches,
        plan_batches,
        read_plan,
        read_slice,
    )

    d = tmp_path / "in"
    (d / "data").mkdir(parents=True)
    rng = random.Random(1)
    rows = {s: _corpus(rng, n, "pretrain", s) for s, n in (("train", 53), ("validation", 40))}
    for split, part in rows.items():  # train: row groups of 7; validation: one group of 40
        pq.write_table(pa.Table.from_pylist(part, schema=ARROW_SCHEMAS["pretrain"]), d / f"data/{split}-00000-of-00001.parquet",
                       row_group_size=7 if split == "train" else None)
    for batch_rows in (1, 5, 7, 100):
        want = [(b.split, b.first_row + i, r) for b in iter_batches([d], batch_rows) for i, r in enumerate(b.table.to_pylist())]
        assert len(want) == 93
        slices = [read_slice(s) for s in read_plan([d], batch_rows)]
        assert all(0 < b.table.num_rows <= batch_rows for b in slices)
        got = [(b.split, b.first_row + i, r) for b in slices for i, r in enumerate(b.table.to_pylist())]
        assert got == want
        assert [b.seq for b in slices] == list(range(len(slices)))
        planned = list(plan_batches([d], batch_rows))
        read_here = {p.split for p in planned if isinstance(p, InputBatch)}
        assert read_here == ({"train", "validation"} if batch_rows == 1 else {"validation"} if batch_rows < 20 else set())
        batches = [p if isinstance(p, InputBatch) else read_slice(p) for p in planned]
        assert [(b.split, b.first_row + i, r) for b in batches for i, r in enumerate(b.table.to_pylist())] == want
        assert [b.seq for b in batches] == list(range(len(batches)))


def test_gather_strings_equals_take(tmp_path, monkeypatch):
    """A shard's large string columns are gathered batch by batch from its temp part; the result is
    arrow's take. Small columns are left to arrow's take (None)."""
    import medmill.builders.streaming.write as write

    def part(table: pa.Table, name: str, rows: int) -> write._TempPart:
        with pa.ipc.new_file(tmp_path / name, table.schema, options=write.TEMP_IPC) as w:
            for at in range(0, table.num_rows, rows):  # several batches
                w.write_table(table.slice(at, rows))
        return write._TempPart(tmp_path / name)

    rng = random.Random(5)
    small = part(pa.table({"s": ["abc"] * 50}), "small.arrow", 50)
    assert write._gather_strings(small, "s", np.arange(50)) is None
    monkeypatch.setattr(write, "TAKE_BYTES", 0)
    for n in (1, 300, 1000):
        values = ["".join(rng.choice("ab中文x") for _ in range(rng.randint(0, 9))) for _ in range(n)]
        table = pa.table({"s": values, "with_null": [None if i == n // 2 else "v" for i in range(n)]})
        source = part(table, f"part-{n}.arrow", 137)
        order = np.array(rng.sample(range(n), n))
        place = np.empty(n, np.int64)
        place[order] = np.arange(n)  # source row order[i] goes to place i
        got = write._gather_strings(source, "s", place)
        assert got is not None and got.equals(pa.array(values).take(pa.array(order)))
        assert write._gather_strings(source, "with_null", place) is None  # nulls: the caller takes
        assert source.column("with_null").combine_chunks().equals(table.column("with_null").combine_chunks())


def test_streamed_dedup_through_many_pair_files_and_gathers_equals_in_memory(inputs, tmp_path, monkeypatch):
    """The decision's pair list split into many block files (read back across block ends), listed by
    forked processes, band keys on disk, large string columns gathered: the in-memory dir, byte for byte."""
    import medmill.builders.curation.dedup as dd
    import medmill.builders.curation.dedup_pairs as dp
    import medmill.builders.streaming.dedup as sd
    import medmill.builders.streaming.write as write

    settings = CurationSettings(validate_records=False, quality=False, pii=False, safety=False, dedup=False)
    base = tmp_path / "memory"
    run_over_dirs("dedup", inputs["pretrain"], base, settings, {}, run=RunOptions("memory"), extra_steps=dedup_steps)
    expected = digest(base)
    seen: list[int] = []
    real_add = dp.PairFiles.add
    monkeypatch.setattr(dp.PairFiles, "add", lambda self, count: (seen.append(count), real_add(self, count))[1])
    monkeypatch.setattr(dp, "PAIR_BLOCK", 300)
    monkeypatch.setattr(dd, "PARALLEL_MIN_DOCS", 0)
    monkeypatch.setattr(write, "TAKE_BYTES", 0)
    jobs: list[int] = []
    real_named = sd._named
    monkeypatch.setattr(sd, "_named", lambda *a: (jobs.append(len(a[0].part_ranges(a[1], sd.PER_JOB))), real_named(*a))[1])
    monkeypatch.setattr(sd, "PER_JOB", 5)  # rejects, clusters and read-backs in many forked jobs
    out = tmp_path / "stream"
    run_over_dirs("dedup", inputs["pretrain"], out, settings, {}, run=RunOptions("local", 2, batch_rows=128), extra_steps=dedup_steps)
    assert digest(out) == expected
    assert len(seen) > 20 and sum(seen) > 0
    assert jobs and jobs[0] > 3


def test_pair_files_read_back_as_one_array(tmp_path):
    from medmill.builders.curation.dedup_pairs import PairFiles

    rng = np.random.default_rng(3)
    blocks = [rng.integers(0, 1000, size, dtype=np.int32) for size in (5, 0, 17, 1, 40)]
    store = PairFiles(tmp_path)
    for k, b in enumerate(blocks):
        store.write(store.block_path(k), b)
        store.add(len(b))
    whole = np.concatenate(blocks)
    assert len(store) == len(whole)
    for lo in range(len(whole) + 1):
        for hi in (lo, lo + 1, lo + 7, lo + 30, len(whole)):
            assert store[lo:hi].tolist() == whole[lo:hi].tolist()
    assert [store.block(k).tolist() for k in range(len(blocks))] == [b.tolist() for b in blocks]
    assert store.bounds == np.cumsum([0] + [len(b) for b in blocks]).tolist()
    store.close()


def test_band_keys_on_disk_give_the_same_decision(tmp_path):
    rng = random.Random(11)
    texts = [_text(rng) for _ in range(400)]
    texts += [t[:-3] + "复查。" for t in texts[:80]] + texts[100:130]
    cfg = DedupConfig(workers=1)
    in_memory, on_disk = DedupState(cfg), DedupState(cfg, band_dir=tmp_path / "bands")
    for s in range(0, len(texts), 37):
        part = batch_state(texts[s : s + 37], cfg)
        in_memory.add(part)
        on_disk.add(part)
    a, b = in_memory.arrays(), on_disk.arrays()
    bands = cfg.bands_rows[0]
    assert isinstance(a[2], np.ndarray) and not isinstance(b[2], np.ndarray)
    assert all((b[2].column(k) == a[2][:, k]).all() for k in range(bands))
    arr = pa.array(texts)
    fetch = lambda pos: arr.take(pa.array(pos))  # noqa: E731
    want = decide(*a, cfg, fetch, None, in_memory.sketch())
    got = decide(*b, cfg, fetch, None, on_disk.sketch(), work_dir=tmp_path)
    assert want.stats["near_duplicates"] > 20 and want.stats["exact_duplicates"] > 20
    assert got.dup_of.tolist() == want.dup_of.tolist() and got.similarity.tolist() == want.similarity.tolist()
    assert got.stats == want.stats
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands"]  # the pair files are gone


def test_spill_scan_reads_each_part_once_and_equals_take(tmp_path):
    from medmill.builders.streaming.spill import Spill

    spill = Spill(tmp_path / "spill.parquet")
    for k in range(6):
        spill.append(pa.table({"v": list(range(k * 100, k * 100 + 10 * k)), "w": [str(i) for i in range(10 * k)]}))
    rng = np.random.default_rng(0)
    wanted = np.unique(rng.integers(0, len(spill), 60))
    reads = []
    real = Spill._file
    spill._file = lambda k: (reads.append(k), real(spill, k))[1]  # type: ignore[method-assign]
    got = list(spill.scan(wanted, ["v", "w"]))
    assert len(reads) == len(set(reads)) == len(got)
    assert np.concatenate([p for p, _ in got]).tolist() == wanted.tolist()
    assert pa.concat_tables([t for _, t in got]).equals(spill.take(wanted, ["v", "w"]))


def test_spill_part_ranges_cover_every_part_and_scan_by_range_equals_scan(tmp_path):
    from medmill.builders.streaming.spill import Spill

    spill = Spill(tmp_path / "spill.parquet")
    for k in range(7):
        spill.append(pa.table({"v": list(range(k * 100, k * 100 + 10 * k + 3))}))
    wanted = np.unique(np.random.default_rng(1).integers(0, len(spill), 50))
    for per_range in (1, 8, 1000):
        ranges = spill.part_ranges(wanted, per_range)
        assert [k for a, b in ranges for k in range(a, b)] == list(range(7))
        if per_range == 1:
            assert len(ranges) > 3
        got = [t for r in ranges for _, t in spill.scan(wanted, ["v"], r)]
        assert pa.concat_tables(got).equals(spill.take(wanted, ["v"]))
