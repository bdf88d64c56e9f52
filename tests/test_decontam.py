"""Decontamination: training texts sharing a long n-gram (or containing a short eval question whole)
with an eval set are removed, with a report of what matched; generic short answers match nothing."""

from __future__ import annotations

import csv
import json

import pytest

from medmill.builders.curation.decontam import EvalIndex, load_eval_texts
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import DecontaminateStep
from medmill.schemas import Message, SFTRecord, Source
from medmill.schemas.errors import MedmillError

CASE = "患者30年余前无明显诱因出现咳嗽、咳痰、喘憋，于当地医院就诊，予以对症治疗后改善。"


def sft(q: str, a: str) -> SFTRecord:
    msgs = [Message(role="user", content=q), Message(role="assistant", content=a)]
    return SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="t"))


@pytest.fixture
def eval_files(tmp_path):
    js = tmp_path / "medical_case.json"
    js.write_text(json.dumps([{"instruction": "以下是关于中医药医案诊断的任务。", "input": CASE, "output": "有"}], ensure_ascii=False), encoding="utf-8")
    cs = tmp_path / "choice.csv"
    with open(cs, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "A", "B", "answer"])
        w.writerow(["斑蝥适用于哪些中医疾病", "经闭", "昏迷", "A"])
    return [js, cs]


def test_long_ngram_and_short_question_matches(eval_files):
    index = EvalIndex.build(eval_files, n=13)
    texts = [
        "病例：" + CASE[5:30] + "，请给出诊断。",  # 25 shared characters
        "斑蝥适用于哪些中医疾病？请详细说明。",  # a short eval question, contained whole
        "有没有什么办法缓解咳嗽？",  # shares only short generic pieces
        "以下是关于中医药医案诊断的任务。请回答。",  # the eval's template instruction is not eval content
    ]
    matches = index.matches(texts)
    assert [m.index for m in matches] == [0, 1]
    assert matches[0].eval_origin.startswith("medical_case.json:") and len(matches[0].ngram) == 13
    assert matches[1].eval_origin == "choice.csv:2" and matches[1].ngram == "斑蝥适用于哪些中医疾病"


def test_step_removes_with_report(eval_files):
    records = [sft("请诊断：" + CASE, "考虑慢性阻塞性肺疾病。"), sft("头痛怎么办？", "注意休息，必要时就医。")]
    result = DecontaminateStep(CurationSettings(decontaminate=eval_files))(records)
    assert [r.id for r in result.records] == [records[1].id]
    assert result.rejects[0].reason == "contaminated" and "medical_case.json" in result.rejects[0].message
    assert result.stats["removed"] == 1 and result.stats["matched_by_eval_file"] == {"medical_case.json": 1}


def test_field_choice_and_errors(eval_files, tmp_path):
    assert [t.text for t in load_eval_texts(eval_files[1], "question")] == ["斑蝥适用于哪些中医疾病"]
    with pytest.raises(MedmillError, match="no column"):
        load_eval_texts(eval_files[1], "nope")
    with pytest.raises(MedmillError, match="no such file"):
        EvalIndex.build([tmp_path / "missing.json"])


def test_tcmchat_eval_samples(samples_dir):
    files = [samples_dir / "tcmchat_medical_case_sample.json", samples_dir / "tcmchat_choice_herb_sample.csv"]
    index = EvalIndex.build(files)
    assert len(index.texts) > 50
    case = json.loads((samples_dir / "tcmchat_medical_case_sample.json").read_text(encoding="utf-8"))[3]["input"]
    question = next(csv.DictReader(open(samples_dir / "tcmchat_choice_herb_sample.csv", encoding="utf-8")))["question"]
    matches = index.matches(["前言。" + case[40:80], question + "？", "高血压患者每天食盐不超过6克。"])
    assert [m.index for m in matches] == [0, 1]
