"""cls: Toyhom department CSVs (GB18030, quoted multi-line fields) -> classification instructions."""

from __future__ import annotations

from pathlib import Path

from medmill.builders.readers.department_csv import read_department_csv
from medmill.builders.tasks.cls import ClsConfig, build_cls

CSV = """department,title,ask,answer
心血管科,高血压患者能吃党参吗？,我有高血压，可以吃党参吗？,可以适量吃。
神经科,小孩癫痫有什么特征,无,"癫痫是大脑神经元突发性异常放电，
根据临床发作类型分为：全身强直-阵挛发作，等等"
心血管科,心慌怎么办,"最近心慌, 胸闷",建议做心电图。
,没有科室的问题,问,答
心血管科,只有三列,答
神经科,头痛怎么办,经常头痛,注意休息。
"""


def write(path: Path, text: str = CSV) -> Path:
    path.write_bytes(text.encode("gb18030"))
    return path


def test_labels_in_prompt_rare_labels_rejected_and_cap(tmp_path: Path) -> None:
    questions = read_department_csv([write(tmp_path / "a.csv")]).questions
    out = build_cls(questions, ClsConfig(min_per_label=2))
    assert {r.meta["label"] for r in out.records} == {"心血管科", "神经科"}
    r = out.records[0]
    assert r.meta["task"] == "cls" and r.meta["labels"] == ["心血管科", "神经科"]
    assert "可选科室：心血管科、神经科" in r.messages[0].content and r.messages[-1].content == r.meta["label"]
    rare = build_cls(questions + [questions[0].__class__("肾内科", "肾结石", "腰痛", "多喝水", "a.csv", 99)],
                     ClsConfig(min_per_label=2))
    assert [x.reason for x in rare.rejects] == ["rare_label"] and "肾内科" not in rare.records[0].meta["labels"]
    capped = build_cls(questions, ClsConfig(min_per_label=1, max_per_label=1))
    assert len(capped.records) == 2 and capped.counters["skipped.over_max_per_label"] == 2


def test_toyhom_sample(samples_dir: Path) -> None:
    read = read_department_csv([samples_dir / "toyhom_IM_sample.csv"])
    assert len(read.questions) >= 50 and read.counters["encodings.gb18030"] == 1 and not read.rejects
    out = build_cls(read.questions, ClsConfig())
    assert out.records and "心血管科" in out.records[0].meta["labels"]
