"""ner: typed lexicon from the KG, longest match first, TCMChat's 类型:实体，实体；… output."""

from __future__ import annotations

from pathlib import Path

from medmill.builders.readers.chunks import prepare_chunks
from medmill.builders.readers.kg import read_kg
from medmill.builders.tasks.common import TaskOutput
from medmill.builders.tasks.ner import NERConfig, build_lexicon, build_ner, find_spans, render_answer
from medmill.builders.text.chunking import ChunkSettings
from medmill.schemas.sources import KGEntity, TextChunk

KG = [
    KGEntity(name="高血压", type="疾病", relations={"症状": ["头痛", "头晕"], "并发症": ["高血压性心脏病", "脑卒中"],
                                                  "常用药物": ["氨氯地平"], "忌食": ["咸菜"]}),
    KGEntity(name="心脏病", type="疾病", relations={"症状": ["胸闷"], "就诊科室": ["心内科"]}),
    KGEntity(name="氨氯地平", relations={"不良反应": ["踝部水肿", "头痛"]}),
]


def test_lexicon_types_and_conflicts() -> None:
    out = TaskOutput()
    lexicon = build_lexicon(KG, NERConfig(), out)
    assert lexicon["高血压"] == "疾病" and lexicon["高血压性心脏病"] == "疾病" and lexicon["头痛"] == "症状"
    assert lexicon["氨氯地平"] == "药物" and lexicon["心内科"] == "科室"
    assert "咸菜" not in lexicon and out.counters["lexicon.untyped_relation_values"] == 1
    assert build_lexicon(KG, NERConfig(relation_types={"忌食": "食物"}), TaskOutput())["咸菜"] == "食物"


def test_longest_match_first_and_no_overlaps() -> None:
    lexicon = build_lexicon(KG, NERConfig(), TaskOutput())
    text = "患者有高血压性心脏病，常头痛、胸闷，服用氨氯地平后出现踝部水肿，头痛加重。"
    spans = find_spans(text, lexicon)
    assert [s.text for s in spans] == ["高血压性心脏病", "头痛", "胸闷", "氨氯地平", "踝部水肿", "头痛"]
    assert all(text[s.start:s.end] == s.text for s in spans)
    assert render_answer(spans) == "疾病:高血压性心脏病；症状:头痛，胸闷，踝部水肿；药物:氨氯地平"


def test_records_and_texts_without_entities() -> None:
    chunks = [TextChunk(id="c1", text="高血压患者常见头晕。", file="a.txt"),
              TextChunk(id="c2", text="今天天气很好。", file="a.txt", offset=10)]
    out = build_ner(chunks, KG, NERConfig())
    assert len(out.records) == 1 and out.counters["texts_without_entities"] == 1
    r = out.records[0]
    assert r.messages[-1].content == "疾病:高血压；症状:头晕"
    assert r.meta["task"] == "ner" and r.meta["entities"] == [
        {"text": "高血压", "type": "疾病", "start": 0, "end": 3}, {"text": "头晕", "type": "症状", "start": 7, "end": 9}]
    assert "高血压患者常见头晕。" in r.messages[0].content and "类型:实体，实体；类型:实体" in r.messages[0].content


def test_output_format_matches_the_tcmchat_sample(samples_dir: Path) -> None:
    import json

    sample = json.loads((samples_dir / "tcmchat_ner_sample.json").read_text(encoding="utf-8"))[0]["output"]
    # TCMChat: ASCII colon after the type, full-width ，between entities and ；between types
    kg = [KGEntity(name="知柏地黄丸", type="药物", relations={"症状": ["面黄肌瘦", "体倦乏力"]})]
    spans = find_spans("脾肾虚弱所致的面黄肌瘦、体倦乏力；可与知柏地黄丸配合使用", build_lexicon(kg, NERConfig(), TaskOutput()))
    ours = render_answer(spans)
    assert ours == "症状:面黄肌瘦，体倦乏力；药物:知柏地黄丸"
    assert "症状:面黄肌瘦，体倦乏力" in sample and sample.endswith("；药物:知柏地黄丸")


def test_example_texts_with_example_kg(examples_dir: Path) -> None:
    chunks = prepare_chunks([examples_dir / "texts"], settings=ChunkSettings(chunk_size=400, chunk_overlap=0)).chunks
    out = build_ner(chunks, read_kg([examples_dir / "kg"]).entities, NERConfig())
    assert len(out.records) >= 8 and out.counters["entities_tagged"] >= 40
    for r in out.records:
        text = r.messages[0].content.split("文本：", 1)[1]
        assert all(text[e["start"]:e["end"]] == e["text"] for e in r.meta["entities"])
