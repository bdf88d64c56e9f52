"""mcq: options from the KG, distractors the entity does not have, keys verified, seeded shuffles."""

from __future__ import annotations

import re
from pathlib import Path

from medmill.builders.readers.kg import read_kg
from medmill.builders.tasks.common import TaskOutput
from medmill.builders.tasks.mcq import MCQConfig, build_mcq, keep_verified, kg_index, verify_record
from medmill.schemas import Message, SFTRecord
from medmill.schemas.sources import KGEntity

KG = [
    KGEntity(name="高血压", type="疾病", relations={"症状": ["头痛", "头晕"], "科室": ["心内科"]}),
    KGEntity(name="偏头痛", type="疾病", relations={"症状": ["单侧头痛", "畏光", "恶心"], "科室": ["神经内科"]}),
    KGEntity(name="胃炎", type="疾病", relations={"症状": ["上腹痛", "恶心", "反酸"], "科室": ["消化内科"]}),
    KGEntity(name="哮喘", type="疾病", relations={"症状": ["喘息", "胸闷"], "科室": ["呼吸内科"]}),
    KGEntity(name="痛风", type="疾病", relations={"症状": ["关节痛"], "科室": ["风湿免疫科"]}),
]


def test_options_answer_and_distractors_follow_the_kg() -> None:
    out = build_mcq(KG, MCQConfig(options=4, seed=1))
    assert out.counters["keys_verified"] == len(out.records) == 10
    for r in out.records:
        m = r.meta
        values = set(next(e for e in KG if e.name == m["entity"]).relations[m["category"]])
        assert m["options"][m["answer"]] in values
        assert not [v for k, v in m["options"].items() if k != m["answer"] and v in values]
        assert list(m["options"]) == ["A", "B", "C", "D"] and re.fullmatch(r"[A-D]", m["answer"])
        user = r.messages[0].content
        assert m["question"] in user and all(f"\n{k}. {v}" in user for k, v in m["options"].items())
        assert r.messages[1].content.startswith(m["answer"])
    # 单侧头痛 contains 头痛: never a distractor for 高血压's 症状
    hyper = next(r for r in out.records if r.meta["entity"] == "高血压" and r.meta["category"] == "症状")
    assert "单侧头痛" not in hyper.meta["options"].values()


def test_shuffle_is_seeded() -> None:
    a = [r.meta for r in build_mcq(KG, MCQConfig(seed=1)).records]
    assert a == [r.meta for r in build_mcq(KG, MCQConfig(seed=1)).records]
    b = [r.meta for r in build_mcq(KG, MCQConfig(seed=2)).records]
    assert [m["options"] for m in a] != [m["options"] for m in b]
    assert sorted({m["answer"] for m in a + b}) != ["A"]  # the key moves around


def _values(meta: dict) -> list[str]:
    return next(e for e in KG if e.name == meta["entity"]).relations[meta["category"]]


def test_a_corrupted_key_is_rejected() -> None:
    good = next(r for r in build_mcq(KG, MCQConfig(seed=3)).records if len(_values(r.meta)) >= 2)
    index = kg_index(KG)
    assert verify_record(good, index) is None
    key, options = good.meta["answer"], good.meta["options"]
    wrong = next(k for k in options if k != key)
    corrupted = good.model_copy(update={"meta": {**good.meta, "answer": wrong}})
    out = TaskOutput()
    keep_verified(corrupted, index, out)
    assert out.records == [] and [r.reason for r in out.rejects] == ["answer_key_mismatch"]
    assert out.rejects[0].raw["id"] == good.id
    twice = {**options, wrong: options[key]}
    assert verify_record(good.model_copy(update={"meta": {**good.meta, "options": twice}}), index)[0] == "duplicate_options"
    other_true = next(v for v in _values(good.meta) if v != options[key])
    ambiguous = {**options, wrong: other_true}
    assert verify_record(good.model_copy(update={"meta": {**good.meta, "options": ambiguous}}), index)[0] == "ambiguous_options"
    edited = SFTRecord(id="x", messages=[Message(role="user", content="改过的题目"), good.messages[1]],
                       source=good.source, meta=good.meta)
    assert verify_record(edited, index)[0] == "options_not_rendered"


def test_example_kg_both_styles(examples_dir: Path) -> None:
    entities = read_kg([examples_dir / "kg"]).entities
    tcm = build_mcq(entities, MCQConfig(style="tcmchat"))
    exam = build_mcq(entities, MCQConfig(style="cmexam", options=5))
    assert len(tcm.records) > 200 and tcm.rejects == [] and exam.records
    assert all(r.meta["question"].endswith("（　）") for r in exam.records)
    assert all(r.messages[-1].content.startswith(f"答案：{r.meta['answer']}\n解析：") for r in exam.records)
    assert all(len(r.meta["options"]) == 5 for r in exam.records)
