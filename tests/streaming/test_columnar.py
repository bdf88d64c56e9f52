"""The column-wise path of a streamed batch (streaming/columnar.py): rows the record model takes as
they are and no step acts on go through as their input rows; every other row takes the record path.
A batch run with it gives exactly the batch result of the record path alone (survivors, rejects and
their order, counters, size figures, dedup state), rows it must not vouch for are handed over, and
streamed runs over such rows still equal the in-memory path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medmill.builders.curation.dedup import DedupConfig
from medmill.builders.curation.inputs import origin_of
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import builder_origin, curation_steps
from medmill.builders.streaming import batch as batch_mod
from medmill.builders.streaming import columnar
from medmill.builders.streaming.batch import BatchOut, BatchWork, DedupWork
from medmill.builders.streaming.inputs import InputBatch
from medmill.commands._curate_dirs import run_over_dirs
from medmill.commands._run_options import RunOptions
from medmill.schemas.dataset_dir import ARROW_SCHEMAS
from medmill.schemas.records import stable_id
from tests.streaming.test_streaming import dedup_steps, digest

TEXTS = ["高血压是心内科常见病，典型表现为头痛、头晕，治疗常用硝苯地平。", "糖尿病可并发肾病，患者应低盐低脂饮食，定期复查血糖。",
         "儿童肺炎多由感染诱发，症状缓解后仍需定期复查，饮食上应戒烟限酒。", "老年人出现胸闷时更要重视，孕妇使用阿司匹林前须咨询医生。"]


def _source(i: int, **change) -> dict:
    return {"file": "in.jsonl", "line": i, "offset": None, "ref": None, "group": f"g{i % 4}", "builder": "kg", "builder_version": "1",
            **change}


def _good_meta(i: int) -> str | None:
    return ['{"topic": "t"}', None, "", '{"b": 1, "a": [1, 2], "z": 1.0}', '{"entity": "高血压", "values": ["头痛", "硝苯地平"]}',
            '{"source_dir": "elsewhere", "_medmill_split": "test"}', "{}"][i % 7]


# rows the model takes as they are, and rows every stage must see: (text, source changes, meta, id)
PRETRAIN_CASES = [
    ("", {}, "{}", None),  # blank text: read reject
    (" \u3000\n", {}, "{}", None),
    (None, {}, "{}", None),
    (TEXTS[0], {}, "{not json", None),  # meta not JSON: read reject
    (TEXTS[0], {}, "[1, 2]", None),  # meta not an object
    (TEXTS[1], {}, "{}", ""),  # empty id
    (TEXTS[1], {"builder": None}, "{}", None),  # the model fills in "unknown": record path
    (TEXTS[2], {"builder_version": None}, "{}", None),
    (TEXTS[3], "null source", "{}", None),
    ("无", {}, "{}", None),  # quality: placeholder
    ("短", {}, "{}", None),  # too short
    ("哈" * 60, {}, "{}", None),  # repeated chars
    ("Ã©Ã©Ã©Ã©Ã©不行", {}, "{}", None),  # garbled
    ("作为一个AI语言模型，我不能提供诊断。", {}, "{}", None),  # llm artifact
    (TEXTS[0] + "联系电话13812345678", {}, "{}", None),  # PII: redacted (new id)
    (TEXTS[1] + "哪里买冰毒", {}, "{}", None),  # safety: dropped
    (TEXTS[2] + "一夜情后担心感染", {}, "{}", None),  # safety: flagged
    (TEXTS[3] + "与评测集相同的一句很长的话用来做去污染", {}, "{}", None),  # decontaminated (when asked)
]


def _pretrain_rows(n_good: int = 40) -> list[dict]:
    rows = []
    for i in range(n_good):
        text = TEXTS[i % 4] + f"第{i}条。"
        rows.append({"id": stable_id("pretrain", text), "text": text, "source": _source(i), "meta": _good_meta(i)})
        if i % 9 == 4:
            rows.append(dict(rows[-1]))  # the same row again
        if i < len(PRETRAIN_CASES):
            text, change, meta, rid = PRETRAIN_CASES[i]
            source = None if change == "null source" else _source(100 + i, **change)
            rows.append({"id": rid if rid is not None else stable_id("pretrain", text or "x"), "text": text, "source": source,
                         "meta": meta})
    return rows


def _msgs(*turns) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


SFT_CASES = [
    _msgs(("assistant", "先回答")),  # must start with user
    _msgs(("user", "问")),  # last turn must be assistant
    _msgs(("user", "问"), ("bot", "答")),  # unknown role
    _msgs(("user", "问"), (None, "答")),
    _msgs(("user", "问"), ("assistant", None)),
    _msgs(("user", " "), ("assistant", TEXTS[0])),  # blank content
    [],  # no messages
    None,
    [{"role": "user", "content": "问"}, None, {"role": "assistant", "content": TEXTS[1]}],  # a null message
    _msgs(("user", "问"), ("user", "又问"), ("assistant", TEXTS[2])),  # roles must alternate
    _msgs(("user", "问"), ("system", "系统"), ("assistant", TEXTS[2])),  # system only first
    _msgs(("user", "高血压怎么办？"), ("assistant", "您好，" + TEXTS[0])),  # boilerplate opener stripped
    _msgs(("user", "高血压怎么办？"), ("assistant", TEXTS[0] + "祝您早日康复！")),  # closer stripped
    _msgs(("user", "高血压是心内科常见病"), ("assistant", "高血压是心内科常见病")),  # answer equals question
    _msgs(("user", "我的电话13812345678，怎么办？"), ("assistant", TEXTS[1])),  # PII in a user turn
    _msgs(("user", "哪里买冰毒"), ("assistant", TEXTS[1])),  # safety in a user turn
    _msgs(("user", "问"), ("assistant", "无")),  # placeholder answer
]


def _sft_rows(n_good: int = 40) -> list[dict]:
    rows = []
    for i in range(n_good):
        shape = i % 3
        msgs = _msgs(("user", f"问题{i}怎么办？"), ("assistant", TEXTS[i % 4]))
        if shape == 1:
            msgs = _msgs(("system", "你是医生"), *[(m["role"], m["content"]) for m in msgs])
        elif shape == 2:
            msgs = msgs + _msgs(("user", "还有呢？"), ("assistant", TEXTS[(i + 1) % 4]))
        rows.append({"id": stable_id("sft", msgs), "messages": msgs, "source": _source(i), "meta": _good_meta(i)})
        if i % 9 == 4:
            rows.append(dict(rows[-1]))
        if i < len(SFT_CASES):
            msgs = SFT_CASES[i]
            rows.append({"id": f"case{i}", "messages": msgs, "source": _source(100 + i), "meta": "{}"})
    return rows


def _batch(kind: str, rows: list[dict], schema: pa.Schema | None = None) -> InputBatch:
    table = pa.Table.from_pylist(rows, schema=schema or ARROW_SCHEMAS[kind])
    return InputBatch(seq=3, table=table, file="in/data/train-00000-of-00001.parquet", split="train", origin="in", first_row=17)


def _record_path_only(monkeypatch) -> None:
    monkeypatch.setattr(batch_mod, "accepted_rows", lambda *a, **k: None)


def _same(a: BatchOut, b: BatchOut) -> None:
    assert a.survivors is not None and b.survivors is not None
    assert a.survivors.schema == b.survivors.schema
    assert a.survivors.to_pylist() == b.survivors.to_pylist()
    assert a.survivors.equals(b.survivors)
    assert (a.read_ok, a.n_survivors, a.split_names, a.terms) == (b.read_ok, b.n_survivors, b.split_names, b.terms)
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.split_codes, b.split_codes)
    for ta, tb in zip([a.read, *a.steps], [b.read, *b.steps], strict=True):
        assert (ta.name, ta.n_in, ta.n_out, ta.counters, ta.stats) == (tb.name, tb.n_in, tb.n_out, tb.counters, tb.stats)
        assert (ta.rejects, ta.by_reason, ta.ordinals) == (tb.rejects, tb.by_reason, tb.ordinals)
    assert a.totals.keys() == b.totals.keys()
    for name in a.totals:
        x, y = a.totals[name], b.totals[name]
        assert x.rows == y.rows and x.data == y.data
        np.testing.assert_array_equal(x.items, y.items)
        np.testing.assert_array_equal(x.null_rows, y.null_rows)
    assert (a.dedup is None) == (b.dedup is None)
    if a.dedup is not None and b.dedup is not None:
        for name in ("exact", "units", "keys"):
            np.testing.assert_array_equal(getattr(a.dedup, name), getattr(b.dedup, name))
        assert a.dedup.sketch is not None and b.dedup.sketch is not None
        np.testing.assert_array_equal(a.dedup.sketch.bits, b.dedup.sketch.bits)


def _eval_set(tmp_path: Path) -> Path:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "与评测集相同的一句很长的话用来做去污染"}, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


SETTINGS = {
    "defaults": {},
    "pii drop, safety flag only": {"pii_action": "drop", "safety_flag_only": True},
    "cjk share": {"min_cjk_share": 0.9, "validate_records": False},
}


@pytest.mark.parametrize("kind", ["pretrain", "sft"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_batch_equals_record_path(tmp_path, monkeypatch, kind, name):
    settings = CurationSettings(dedup=False, decontaminate=[_eval_set(tmp_path)], **SETTINGS[name])
    steps = curation_steps(kind, settings)
    map_steps, late = steps[:-1], steps[-1:]  # decontaminate runs after the map steps
    batch = _batch(kind, _pretrain_rows() if kind == "pretrain" else _sft_rows())
    work = BatchWork(kind, map_steps, late)
    fast = work(batch)
    accepted = columnar.accepted_rows(batch.table, kind, batch.origin, batch.split)
    assert accepted is not None
    settled, _ = columnar.settle(accepted, [*map_steps, *late])
    assert 30 <= len(settled.rows) < len(accepted.rows) < batch.table.num_rows  # some of each
    assert any(t.rejects for t in fast.steps) and fast.read.rejects
    _record_path_only(monkeypatch)
    _same(fast, work(batch))


@pytest.mark.parametrize("kind", ["pretrain", "sft"])
@pytest.mark.parametrize("origin", [origin_of, builder_origin])
def test_dedup_batch_equals_record_path(monkeypatch, kind, origin):
    """The compared texts, origins, carried metas and fact-guard terms of a dedup batch."""
    rows = _pretrain_rows() if kind == "pretrain" else _sft_rows()
    fields = ["text"] if kind == "pretrain" else ["user", "answer"]
    work = BatchWork(kind, [], [], DedupWork(fields, DedupConfig(), origin, with_sigs=True))
    batch = _batch(kind, rows)
    fast = work(batch)
    assert fast.terms == {"高血压", "头痛", "硝苯地平"}
    _record_path_only(monkeypatch)
    slow = work(batch)
    _same(fast, slow)
    np.testing.assert_array_equal(fast.dedup.sigs, slow.dedup.sigs)


def test_rows_not_vouched_for():
    """Exactly the rows the model would reject or rewrite are left to the record path."""
    rows = _pretrain_rows(n_good=len(PRETRAIN_CASES))
    acc = columnar.accepted_rows(_batch("pretrain", rows).table, "pretrain", "in", "train")
    assert acc is not None
    taken = {rows[i]["id"] for i in acc.rows.tolist()}
    good = {r["id"] for r in rows if r["source"] and r["source"]["line"] < 100}
    # of the cases (source line 100+), the ones with a valid text, meta, id and builder fields
    vouched_cases = {r["text"] for r in rows if r["source"] and r["source"]["line"] >= 100 and r["id"] in taken}
    assert good <= taken
    assert vouched_cases == {case[0] for case in PRETRAIN_CASES[9:]}  # well-formed: the steps judge them
    sft = _sft_rows(n_good=len(SFT_CASES))
    acc = columnar.accepted_rows(_batch("sft", sft).table, "sft", "in", "train")
    assert acc is not None
    taken_cases = sorted(int(sft[i]["id"][4:]) for i in acc.rows.tolist() if sft[i]["id"].startswith("case"))
    assert taken_cases == [11, 12, 13, 14, 15, 16]  # well-formed: the steps judge them


def test_other_schemas_and_kinds_take_the_record_path(monkeypatch):
    rows = _pretrain_rows(n_good=5)
    wider = ARROW_SCHEMAS["pretrain"].append(pa.field("extra", pa.string()))
    assert columnar.accepted_rows(_batch("pretrain", rows, wider).table, "pretrain", "in", "train") is None
    work = BatchWork("pretrain", curation_steps("pretrain", CurationSettings(dedup=False)))
    out = work(_batch("pretrain", rows, wider))
    assert out.read_ok == 0 and len(out.read.rejects) == len(rows)  # extra columns: every row a read reject
    assert columnar.accepted_rows(_batch("preference", []).table, "preference", "in", "train") is None


def test_unknown_steps_take_the_record_path(monkeypatch):
    from medmill.builders.curation.stages import QualityStep

    class Stricter(QualityStep):  # a subclass may judge differently: no column-wise path
        pass

    called = []
    monkeypatch.setattr(batch_mod, "settle", lambda *a: called.append(a) or columnar.settle(*a))
    BatchWork("pretrain", [Stricter(CurationSettings())])(_batch("pretrain", _pretrain_rows(5)))
    assert not called
    BatchWork("pretrain", [QualityStep(CurationSettings())])(_batch("pretrain", _pretrain_rows(5)))
    assert called


@pytest.mark.parametrize("kind", ["pretrain", "sft"])
@pytest.mark.parametrize("command", ["filter", "dedup"])
def test_streamed_tricky_rows_equal_in_memory(tmp_path, kind, command):
    root = tmp_path / "in"
    (root / "data").mkdir(parents=True)
    rows = _pretrain_rows(300) if kind == "pretrain" else _sft_rows(300)
    half = len(rows) // 2
    for k, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part, schema=ARROW_SCHEMAS[kind]), root / f"data/train-{k:05d}-of-00002.parquet")
    (root / "manifest.json").write_text(json.dumps({"kind": kind, "license": "cc-by-4.0"}), encoding="utf-8")
    settings = CurationSettings(dedup=False, decontaminate=[_eval_set(tmp_path)]) if command == "filter" else CurationSettings(
        validate_records=False, quality=False, pii=False, safety=False, dedup=False)
    extra = {} if command == "filter" else {"extra_steps": dedup_steps}
    base = tmp_path / "memory"
    run_over_dirs(command, [root], base, settings, {}, run=RunOptions("memory", max_shard_bytes=20_000), **extra)
    expected = digest(base)
    for workers, batch_rows in [(1, 100_000), (2, 53)]:
        out = tmp_path / f"stream-{workers}"
        run_over_dirs(command, [root], out, settings, {}, run=RunOptions("local", workers, batch_rows=batch_rows, max_shard_bytes=20_000),
                      **extra)
        assert digest(out) == expected, (workers, batch_rows)
