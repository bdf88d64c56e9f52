"""build-lit-qa: literature reading, QA and dialogue validation, and the command end to end against the
local OpenAI-compatible server with a realistic, imperfect scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.builders.core.validate import validate_dir
from medmill.builders.lit_qa.generate import LitConfig, LitDialogue, LitQASet, build_lit_qa, turns_for
from medmill.builders.llm.types import LLMRequest, LLMResult
from medmill.builders.readers.literature import parse_field_map, read_literature
from medmill.cli import _register, app
from medmill.schemas import LiteratureRecord
from medmill.schemas.dataset_dir import iter_rows, read_manifest
from medmill.schemas.errors import MedmillError
from medmill.schemas.sources import SourceRef
from tests.book_lit_fake_llm import respond
from tests.llm_server import FakeLLMServer

_register()

PAPER = LiteratureRecord(
    title="限制钠盐摄入对原发性高血压患者血压的影响",
    conclusion="将每日食盐摄入量减少至5 g以下，可使原发性高血压患者的收缩压平均下降约5 mmHg，且在老年患者中降压效果更明显。",
    year=2019,
    doi="10.0000/x.1",
    ref=SourceRef(file="papers.jsonl", line=3),
)


# --- reading ------------------------------------------------------------------------------------------


def test_example_jsonl_and_chinese_csv_are_read_with_rejects_naming_lines(examples_dir):
    read = read_literature([examples_dir / "literature"])
    titles = [r.title for r in read.records]
    assert len(titles) == 7 and "幽门螺杆菌根除治疗与胃癌预防" in titles  # the CSV's 题目/结论 columns
    hbv = next(r for r in read.records if r.doi == "10.0000/medmill.example.2")
    assert hbv.year == 2020 and hbv.keywords == [
        "慢性乙型肝炎",
        "抗病毒治疗",
        "肝细胞癌",
    ]  # "2020", "a; b; c"
    csv_rec = next(r for r in read.records if r.title.startswith("规律有氧运动"))
    assert csv_rec.ref.file == "literature/conclusions_zh.csv" and csv_rec.ref.line == 2
    assert csv_rec.keywords == ["2型糖尿病", "运动", "糖化血红蛋白"]
    assert {(r.reason, r.source.file, r.source.line) for r in read.rejects} == {
        ("no_title", "literature/conclusions.jsonl", 5),
        ("invalid_json", "literature/conclusions.jsonl", 7),
    }


def test_field_map_duplicates_and_bad_rows(tmp_path):
    f = tmp_path / "papers.csv"
    f.write_text(
        "paper_name,main_finding,pub\n"
        'A,"结论一，很长的一句话。",2020-05-01\n'
        'A,"同一篇的重复。",2020\n'
        "B,,2021\n"
        'C,"结论三。",n/a,extra\n',
        encoding="utf-8",
    )
    read = read_literature([f], parse_field_map(["title=paper_name", "conclusion=main_finding", "year=pub"]))
    assert [(r.title, r.year) for r in read.records] == [("A", 2020)]
    assert [(r.reason, r.source.line) for r in read.rejects] == [
        ("duplicate_paper", 3),
        ("no_conclusion", 4),
        ("bad_csv_row", 5),
    ]
    with pytest.raises(MedmillError, match="unknown field"):
        parse_field_map(["name=paper_name"])
    with pytest.raises(MedmillError, match="FIELD=COLUMN"):
        parse_field_map(["title"])


def test_bentsao_liver_cancer_dialogues_are_not_literature_records(samples_dir):
    """The real BenTsao file holds generated dialogues, not conclusions: every item is rejected, with a reason."""
    read = read_literature([samples_dir / "huatuo_liver_cancer_sample.json"])
    assert read.records == [] and len(read.rejects) == 50
    assert {r.reason for r in read.rejects} == {"no_title"}


def test_reject_messages_say_whether_the_column_is_missing_or_empty(tmp_path):
    f = tmp_path / "papers.csv"
    f.write_text("题目,结论\nA,\n", encoding="utf-8")
    g = tmp_path / "other.csv"
    g.write_text("题目,发现\nB,某药有效。\n", encoding="utf-8")
    read = read_literature([f, g])
    assert [(r.reason, r.message) for r in read.rejects] == [
        ("no_conclusion", "conclusion is empty (column 结论)"),
        (
            "no_conclusion",
            "no conclusion (column conclusion/conclusions/Conclusion/结论/研究结论/主要结论); "
            "map it with --field conclusion=COLUMN",
        ),
    ]


def test_object_keyed_by_index_and_utf16_files(tmp_path):
    keyed = tmp_path / "papers.json"
    papers = {"0": {"title": "甲", "conclusion": "甲药可降低血压。", "year": "2021年"}, "1": {"title": "乙", "conclusion": "乙药有效。"}}
    keyed.write_text(json.dumps(papers, ensure_ascii=False), encoding="utf-8")
    wide = tmp_path / "wide.csv"
    wide.write_bytes("title,conclusion\n丙,丙药有效。\n".encode("utf-16-le"))
    read = read_literature([keyed, wide])
    assert [(r.title, r.year) for r in read.records] == [("甲", 2021), ("乙", None)]
    assert [r.reason for r in read.rejects] == ["unreadable"] and "UTF-16" in read.rejects[0].message


def test_csv_with_a_very_long_abstract_and_a_tab_separated_txt(tmp_path):
    long = tmp_path / "long.csv"
    long.write_text('title,conclusion,abstract\nA,甲药有效。,"' + "摘" * 200_000 + '"\nB,乙药有效。,x\n', encoding="utf-8")
    tabs = tmp_path / "export.txt"
    tabs.write_text("题目\t结论\t年份\n丙\t丙药有效。\t2020年\n", encoding="utf-8")
    read = read_literature([long, tabs])
    assert read.rejects == []
    assert [(r.title, r.year) for r in read.records] == [("A", None), ("B", None), ("丙", 2020)]
    assert len(read.records[0].abstract) == 200_000


def test_the_same_doi_with_a_doi_org_prefix_is_the_same_paper(tmp_path):
    f = tmp_path / "papers.jsonl"
    rows = [
        {"title": "甲", "conclusion": "甲药可降低血压。", "doi": "10.1000/ABC.1"},
        {"title": "甲（英文版）", "conclusion": "甲药可降低血压。", "doi": "https://doi.org/10.1000/abc.1"},
        {"title": "甲（再版）", "conclusion": "甲药可降低血压。", "doi": "doi: 10.1000/abc.1"},
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    read = read_literature([f])
    assert [r.title for r in read.records] == ["甲"]
    assert [(r.reason, r.source.line) for r in read.rejects] == [("duplicate_paper", 2), ("duplicate_paper", 3)]


def test_a_structured_abstract_supplies_a_missing_conclusion(tmp_path):
    f = tmp_path / "cnki.csv"
    f.write_text(
        "题目,摘要\n"
        '甲,"目的：评价索拉非尼的疗效。\n方法：回顾性分析120例。\n结果：中位生存期10.7个月。\n结论：索拉非尼可延长晚期肝癌患者的生存期。"\n'
        "乙,无结构的摘要，没有结论段。\n",
        encoding="utf-8",
    )
    read = read_literature([f])
    assert [(r.title, r.conclusion) for r in read.records] == [("甲", "索拉非尼可延长晚期肝癌患者的生存期。")]
    assert read.records[0].abstract.startswith("目的：")
    assert [(r.reason, r.source.line) for r in read.rejects] == [("no_conclusion", 6)]


# --- builder against scripted results -------------------------------------------------------------------


class Scripted:
    def __init__(self, values):
        self.values = values
        self.requests: list[LLMRequest] = []

    def run(self, requests, desc=""):
        self.requests.extend(requests)
        return [LLMResult(r.key, True, v) for r, v in zip(requests, self.values, strict=True)]


def test_qa_pairs_need_a_reference_from_the_paper():
    value = LitQASet(
        pairs=[
            {
                "question": "高血压患者每天吃多少盐合适？",
                "answer": "每日食盐摄入量减少至5 g以下，可使收缩压平均下降约5 mmHg（《限制钠盐摄入对原发性高血压患者血压的影响》，2019）。",
                "reference": ["将每日食盐摄入量减少至5 g以下，可使原发性高血压患者的收缩压平均下降约5 mmHg"],
            },
            {
                "question": "限盐对年轻人血压有用吗？",
                "answer": "对年轻人没有效果，不需要限盐。",
                "reference": ["限盐对年轻人无效。"],
            },
            {"question": "本研究的结论是什么？", "answer": PAPER.conclusion, "reference": [PAPER.conclusion]},
        ]
    )
    out = build_lit_qa([PAPER], LitConfig(style="qa"), Scripted([value]))
    assert len(out.records) == 1
    rec = out.records[0]
    assert rec.meta["cites_paper"] is True and rec.meta["paper"]["doi"] == "10.0000/x.1"
    assert rec.source.file == "papers.jsonl" and rec.source.line == 3 and rec.source.group.startswith("p")
    assert sorted(r.reason for r in out.rejects) == ["not_self_contained", "reference_not_in_paper"]


def _dialogue(*turns):
    return LitDialogue(turns=[{"role": role, "content": text} for role, text in turns])


GOOD = (
    ("患者", "医生您好，我有高血压，平时吃得比较咸，需要限盐吗？"),
    (
        "医生",
        "需要。2019年发表的《限制钠盐摄入对原发性高血压患者血压的影响》研究显示，将每日食盐摄入量减少至5 g以下，可使收缩压平均下降约5 mmHg。",
    ),
    ("患者", "我父亲七十岁了，限盐对他也有用吗？"),
    ("医生", "有用，在老年患者中降压效果更明显，建议长期坚持。"),
)


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        (GOOD, None),
        (GOOD[:3], "bad_turn_order"),
        (GOOD[:2], "wrong_turn_count"),
        ((GOOD[0], ("doctor", "<bot>: " + GOOD[1][1]), *GOOD[2:]), "meta_talk"),
        ((GOOD[1], GOOD[0], *GOOD[2:]), "bad_turn_order"),
        ((("护士", "你好"), *GOOD[1:]), "unknown_role"),
        ((GOOD[0], ("医师", GOOD[1][1]), ("用户", GOOD[2][1]), ("大夫", GOOD[3][1])), None),
        (
            (
                GOOD[0],
                ("医生", "不用担心，多休息、心情放松就好了，平时多运动。"),
                GOOD[2],
                ("医生", "一样的，注意休息就行。"),
            ),
            "low_overlap",
        ),
    ],
)
def test_dialogue_validation(turns, reason):
    out = build_lit_qa(
        [PAPER], LitConfig(style="dialogue", turns_min=2, turns_max=3), Scripted([_dialogue(*turns)])
    )
    if reason is None:
        assert list(out.rejects) == [] and len(out.records) == 1
        messages = out.records[0].messages
        assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
        assert out.records[0].meta["cites_paper"] is True and out.records[0].meta["turns"] == 2
    else:
        assert out.records == [] and [r.reason for r in out.rejects] == [reason]


def test_turn_counts_are_spread_over_the_range_and_fixed_per_paper_and_sample():
    cfg = LitConfig(style="dialogue", turns_min=2, turns_max=4)
    papers = [PAPER.model_copy(update={"doi": f"10.0000/x.{i}"}) for i in range(30)]
    counts = {turns_for(p, 0, cfg) for p in papers}
    assert counts == {2, 3, 4}
    assert turns_for(papers[0], 0, cfg) == turns_for(papers[0], 0, cfg)


# --- the command end to end -----------------------------------------------------------------------------


def invoke(*args):
    result = CliRunner().invoke(app, ["build-lit-qa", *map(str, args)])
    if isinstance(result.exception, MedmillError):
        raise result.exception
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _records(out: Path) -> list[dict]:
    return [{**row, "split": split, "meta": json.loads(row["meta"])} for split, _, _, row in iter_rows(out)]


@pytest.fixture
def server():
    with FakeLLMServer(responder=respond) as srv:
        yield srv


def _groups_in_one_split(records):
    split_of: dict[str, set] = {}
    for r in records:
        split_of.setdefault(r["source"]["group"], set()).add(r["split"])
    return all(len(s) == 1 for s in split_of.values())


def test_build_lit_qa_dialogues(tmp_path, server, examples_dir):
    out = tmp_path / "dialogues"
    args = [examples_dir / "literature", "--out", out, "--style", "dialogue", "--turns", "2-4"]
    args += [
        "--per-paper",
        "2",
        "--val-size",
        "0.3",
        "--llm-base-url",
        server.base_url,
        "--llm-model",
        "fake",
    ]
    invoke(*args)
    assert validate_dir(out).ok
    records = _records(out)
    assert len(records) >= 4 and _groups_in_one_split(records)
    for r in records:
        roles = [m["role"] for m in r["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant" and 2 <= len(roles) // 2 <= 4
        assert not any("<bot>" in m["content"] or "<user>" in m["content"] for m in r["messages"])
        assert r["meta"]["style"] == "dialogue" and r["meta"]["paper"]["title"]
    assert any(r["meta"]["cites_paper"] for r in records)
    manifest = read_manifest(out)
    assert {"read/no_title", "read/invalid_json", "lit-qa.dialogue/bad_turn_order"} <= set(
        manifest["rejects_by_reason"]
    )
    assert manifest["prompts"] == [{"id": "lit_qa_dialogue", "version": "1"}]
    sent = len(server.log)
    invoke(*args)  # re-run: everything comes from the cache
    assert len(server.log) == sent
    assert sorted(r["id"] for r in _records(out)) == sorted(r["id"] for r in records)


def test_build_lit_qa_pairs(tmp_path, server, examples_dir):
    out = tmp_path / "qa"
    invoke(
        examples_dir / "literature", "--out", out, "--llm-base-url", server.base_url, "--llm-model", "fake"
    )
    assert validate_dir(out).ok
    records = _records(out)
    assert len(records) >= 6 and _groups_in_one_split(records)
    for r in records:
        assert r["meta"]["style"] == "qa" and r["meta"]["reference"] and r["meta"]["overlap"] >= 0.5
    reasons = set(read_manifest(out)["rejects_by_reason"])
    assert {"lit-qa.qa/reference_not_in_paper", "lit-qa.qa/not_self_contained"} <= reasons
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "grouped by paper" in card and "literature/conclusions_zh.csv" in card


def test_lit_qa_user_errors_are_one_line(tmp_path, server, examples_dir):
    base = ["--out", tmp_path / "o", "--llm-base-url", server.base_url, "--llm-model", "fake"]
    with pytest.raises(MedmillError, match="--turns"):
        invoke(examples_dir / "literature", *base, "--style", "dialogue", "--turns", "two")
    with pytest.raises(MedmillError, match="minimum is above the maximum"):
        invoke(examples_dir / "literature", *base, "--style", "dialogue", "--turns", "4-2")
    with pytest.raises(MedmillError, match=r"no usable literature record.*conclusions\.jsonl:\d+ no title"):
        invoke(examples_dir / "literature" / "conclusions.jsonl", *base, "--field", "title=题目")


def test_gb18030_csv_is_detected(tmp_path, examples_dir):
    text = (examples_dir / "literature" / "conclusions_zh.csv").read_text(encoding="utf-8")
    f = tmp_path / "papers_gbk.csv"
    f.write_bytes(text.replace("\n", "\r\n").encode("gb18030"))
    read = read_literature([f])
    assert [r.title for r in read.records] == [
        "规律有氧运动对2型糖尿病患者血糖控制的影响",
        "幽门螺杆菌根除治疗与胃癌预防",
    ]
    assert read.rejects == []
