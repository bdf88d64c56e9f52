"""Template-mode KG-QA: grounding, answer composition, combined and reverse questions, caps, templates."""

from __future__ import annotations

from importlib import resources

import pytest

from medmill.builders.kg_qa.template_qa import TemplateQAConfig, build_template_records, join_values
from medmill.builders.kg_qa.templates import load_templates
from medmill.builders.readers.kg import read_kg
from medmill.schemas.errors import MedmillError
from medmill.schemas.sources import KGEntity, SourceRef


def _e(name, relations=None, attributes=None, line=1):
    return KGEntity(name=name, relations=relations or {}, attributes=attributes or {},
                    ref=SourceRef(file="kg.jsonl", line=line))


KG = [
    _e("感冒", {"症状": ["鼻塞", "流涕", "发热"], "就诊科室": ["内科"], "检查": ["血常规"],
                "治疗方式": ["对症治疗"]}, {"简介": "感冒是常见的上呼吸道感染。"}, line=1),
    _e("流感", {"症状": ["发热", "肌肉酸痛", "鼻塞"], "就诊科室": ["感染科"], "检查": ["流感病毒抗原检测"],
                "治疗方式": ["抗病毒治疗"]}, {"医保": "是"}, line=2),
    _e("肺炎", {"症状": ["发热", "咳嗽"], "检查": ["胸部X线检查"], "怪关系": ["某值"]}, line=3),
]


@pytest.fixture(scope="module")
def templates():
    return load_templates()


def _all_kg_values(entities):
    values = set()
    for e in entities:
        for vs in e.relations.values():
            values.update(vs)
        values.update(e.attributes.values())
        values.add(e.name)
    return values


def test_join_values():
    assert join_values(["A"]) == "A"
    assert join_values(["A", "B"]) == "A和B"
    assert join_values(["A", "B", "C"]) == "A、B和C"
    assert join_values(["一次2片，一日3次", "饭后服用"]) == "一次2片，一日3次；饭后服用"


def test_every_answer_value_comes_from_the_kg(templates):
    result = build_template_records(KG, templates, TemplateQAConfig())
    by_name = {e.name: e for e in KG}
    kg_values = _all_kg_values(KG)
    assert result.records
    for rec in result.records:
        question, answer = rec.messages[-2].content, rec.messages[-1].content
        meta = rec.meta
        assert meta["values"], rec
        for label, values in meta["values"].items():
            for v in values:
                if meta.get("by_value"):  # 医保: 是 is said as "属于医保疾病"
                    said = templates.relations[templates.canonical(label)].answers_by_value[v]
                    assert answer == said.format(entity=meta["entity"])
                else:
                    assert v in answer, (v, answer)
                assert v in kg_values, v
                if meta["qtype"] in ("relation", "combined"):
                    assert v in by_name[meta["entity"]].relations[label]
                if meta["qtype"] == "attribute":
                    entity = by_name[meta["entity"]]
                    assert v in entity.attributes.get(label, "") or v in entity.relations.get(label, [])
        if meta["qtype"].startswith("reverse"):
            asked = meta["question_values"]["症状"]
            assert all(s in question for s in asked)
            for disease in meta["values"]["entities"]:  # each listed disease really has every asked symptom
                assert set(asked) <= set(by_name[disease].relations["症状"])
            for check in meta["values"].get("检查", []):
                assert any(check in by_name[d].relations.get("检查", []) for d in meta["values"]["entities"])
        else:
            assert meta["entity"] in question
        assert rec.source.file == "kg.jsonl" and rec.source.builder == "kg-qa"


def test_record_kinds_and_sources(templates):
    result = build_template_records(KG, templates, TemplateQAConfig())
    qtypes = {r.meta["qtype"] for r in result.records}
    assert qtypes == {"relation", "attribute", "combined", "reverse_single", "reverse_multi"}
    fever = [r for r in result.records if r.meta["qtype"] == "reverse_single" and r.meta["entity"] == "发热"]
    (rec,) = fever
    assert rec.meta["values"]["entities"] == ["感冒", "流感", "肺炎"]
    assert "感冒、流感和肺炎" in rec.messages[-1].content
    assert rec.source.group == "symptom:发热"
    # 鼻塞 + 发热 are shared by 感冒 and 流感 -> one multi-symptom question naming both, with their checks
    multi = [r for r in result.records if r.meta["qtype"] == "reverse_multi"]
    assert multi and all(len(r.meta["values"]["entities"]) >= 2 for r in multi)
    # a symptom listed by one disease only gets no reverse question
    assert not [r for r in result.records if r.meta["qtype"] == "reverse_single" and r.meta["entity"] == "咳嗽"]
    combos = {r.meta["template"].split(":")[0] for r in result.records if r.meta["qtype"] == "combined"}
    assert combos == {"科室_检查", "症状_治疗"}
    entity_groups = {r.source.group for r in result.records if not r.meta["qtype"].startswith("reverse")}
    assert entity_groups == {"entity:感冒", "entity:流感", "entity:肺炎"}


def test_text_attributes_yes_no_and_generic(templates):
    result = build_template_records(KG, templates, TemplateQAConfig(reverse=False, combined=False))
    answers = {r.meta["template"].split(":")[0] + "/" + r.meta["entity"]: r.messages[-1].content
               for r in result.records}
    assert answers["简介/感冒"] == "感冒是常见的上呼吸道感染。"
    assert answers["医保/流感"].startswith("流感属于医保疾病")
    assert "某值" in answers["generic/肺炎"] and "怪关系" in answers["generic/肺炎"]
    assert result.counters["relations_without_template.怪关系"] == 1


def test_long_lists_cut_and_said(templates):
    values = [f"症状{chr(0x4e00 + i)}" for i in range(15)]
    result = build_template_records([_e("某病", {"症状": values})], templates, TemplateQAConfig(reverse=False))
    (rec,) = result.records
    assert rec.meta["truncated"] and rec.meta["values"]["症状"] == values[:10]
    assert "共15项" in rec.messages[-1].content and values[10] not in rec.messages[-1].content
    assert result.counters["lists_cut"] == 1


def test_skipped_relations_and_entities_without_facts(templates):
    entity = _e("某病", {"药品明细": ["某厂某药(某药)"]})
    result = build_template_records([entity], templates, TemplateQAConfig())
    assert not result.records
    (reject,) = result.rejects
    assert reject.reason == "no_usable_facts" and reject.source.line == 1
    assert result.counters["relations_skipped.药品明细"] == 1


def test_per_entity_cap_system_prompt_and_determinism(templates):
    cfg = TemplateQAConfig(per_entity=2, seed=7, system_prompt="你是医学助手。")
    a = build_template_records(KG, templates, cfg)
    b = build_template_records(KG, templates, cfg)
    assert [r.id for r in a.records] == [r.id for r in b.records]
    groups = {}
    for r in a.records:
        groups[r.source.group] = groups.get(r.source.group, 0) + 1
        assert r.messages[0].role == "system" and r.messages[0].content == "你是医学助手。"
    assert max(groups.values()) == 2
    assert a.counters["records_over_per_entity_cap"] > 0
    seeds = {tuple(r.id for r in build_template_records(KG, templates, TemplateQAConfig(seed=s)).records)
             for s in range(6)}
    assert len(seeds) > 1  # the seed picks among paraphrases


def test_adding_an_entity_keeps_other_entities_records(templates):
    base = build_template_records(KG[:2], templates, TemplateQAConfig(reverse=False))
    more = build_template_records([*KG[:2], _e("胃炎", {"症状": ["上腹痛"]})], templates,
                                  TemplateQAConfig(reverse=False))
    assert {r.id for r in base.records} <= {r.id for r in more.records}


def test_real_qasystem_sample_grounded(samples_dir, templates):
    read = read_kg([samples_dir / "qasystem_medical_sample.json"])
    result = build_template_records(read.entities, templates, TemplateQAConfig())
    kg_values = _all_kg_values(read.entities)
    assert len(result.records) > 100
    for rec in result.records:
        for values in rec.meta["values"].values():
            for v in values:
                assert rec.meta.get("by_value") or v in rec.messages[-1].content
                assert v in kg_values or any(v in t for e in read.entities for t in e.attributes.values())
        assert "毓卓" not in rec.messages[-1].content and "闫鹏辉" not in rec.messages[-1].content


def test_templates_file_errors(tmp_path):
    with pytest.raises(MedmillError, match="not found"):
        load_templates(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    text = resources.files("medmill.prompts").joinpath("kg_qa_templates.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace('"{entity}有哪些症状？"', '"{entity}有哪些{symptomz}？"'), encoding="utf-8")
    with pytest.raises(MedmillError, match="symptomz"):
        load_templates(bad)
    (tmp_path / "x.yaml").write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(MedmillError, match="not valid YAML"):
        load_templates(tmp_path / "x.yaml")


def test_labels_sharing_a_template_are_asked_once(templates):
    entity = _e("某病", {"临床表现": ["发热", "皮疹"], "症状": ["皮疹", "瘙痒"]},
                {"简介": "某病是一种皮肤病。", "概述": "另一种说法。"})
    result = build_template_records([entity], templates, TemplateQAConfig(reverse=False, combined=False))
    symptom = [r for r in result.records if r.meta["template"].startswith("症状:")]
    (rec,) = symptom
    assert rec.meta["values"] == {"临床表现": ["发热", "皮疹"], "症状": ["皮疹", "瘙痒"]}
    assert "发热、皮疹和瘙痒" in rec.messages[-1].content
    intro = [r for r in result.records if r.meta["template"].startswith("简介:")]
    assert len(intro) == 1 and intro[0].messages[-1].content == "某病是一种皮肤病。"
    assert result.counters["relations_merged_by_template"] == 1
    assert result.counters["attributes_already_asked"] == 1
