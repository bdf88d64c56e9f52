"""Issue 12 (readers): a CSV/TSV cell that opens a quote and never closes it must become a reject
naming file and line, and the rows after it must still be read, in every reader of delimited files."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmill.builders.curation.decontam import load_eval_texts
from medmill.builders.readers.csvio import iter_csv_rows
from medmill.builders.readers.kg import read_kg
from medmill.builders.readers.literature import read_literature
from medmill.builders.readers.prompt_items import read_inputs

KG_CSV = 'head,relation,tail\n二甲双胍,适应症,"2型糖尿病\n高血压,症状,头痛\n高血压,症状,眩晕\n糖尿病,症状,多饮\n'


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_shared_reader_resumes_after_an_unclosed_quote_and_keeps_multiline_cells():
    text = 'a,b,c\n1,2,"open\n3,4,5\n"x",y,"two\nlines"\n6,7,"8" tail\n9,10,11\n'
    rows = list(iter_csv_rows(text, ","))
    good = [(r.line, r.cells) for r in rows if r.cells is not None]
    bad = [(r.line, r.error) for r in rows if r.error is not None]
    assert good == [(1, ["a", "b", "c"]), (3, ["3", "4", "5"]), (4, ["x", "y", "two\nlines"]), (7, ["9", "10", "11"])]
    assert [line for line, _ in bad] == [2, 6]
    assert "quote opened on line 2" in bad[0][1]


@pytest.mark.parametrize("encoding,delimiter", [("utf-8", ","), ("gb18030", ","), ("utf-8", "\t")])
def test_kg_csv_unclosed_quote_is_a_reject_and_later_rows_are_read(tmp_path, encoding, delimiter):
    text = KG_CSV.replace(",", delimiter).replace("\n", "\r\n")
    f = _write(tmp_path / ("kg.tsv" if delimiter == "\t" else "kg.csv"), text, encoding)
    result = read_kg([f])
    names = {e.name: e for e in result.entities}
    assert set(names) == {"高血压", "糖尿病"}  # before the fix: one entity, 二甲双胍, holding the whole file
    assert names["高血压"].relations["症状"] == ["头痛", "眩晕"]
    [reject] = result.rejects
    assert reject.source.file.endswith(f.name) and reject.source.line == 2
    assert "never closed" in reject.message and "二甲双胍" in reject.raw


def test_kg_csv_quote_closed_far_below_is_a_reject_too(tmp_path):
    # the stray quote meets a later quoted cell: the csv module would glue three rows into one cell
    f = _write(tmp_path / "kg.csv", 'head,relation,tail\n二甲双胍,适应症,"2型糖尿病\n高血压,症状,头痛\n"糖尿病",症状,多饮\n')
    result = read_kg([f])
    assert {e.name for e in result.entities} == {"高血压", "糖尿病"}
    assert [(r.source.line, r.reason) for r in result.rejects] == [(2, "csv_error")]


def test_literature_csv_unclosed_quote_keeps_the_next_paper(tmp_path):
    f = _write(
        tmp_path / "papers.csv",
        '题目,结论\n运动与血糖,"规律运动可降低糖化血红蛋白\n幽门螺杆菌与胃癌,根除幽门螺杆菌可降低胃癌风险。\n',
    )
    result = read_literature([f])
    assert [r.title for r in result.records] == ["幽门螺杆菌与胃癌"]  # before: 1 paper of 2, no reject
    [reject] = result.rejects
    assert reject.reason == "bad_csv" and reject.source.line == 2 and "never closed" in reject.message


def test_prefs_prompt_csv_unclosed_quote_and_extra_fields_have_their_own_reasons(tmp_path):
    f = _write(
        tmp_path / "prompts.csv",
        'question,answer\n"高血压怎么办,多运动\n糖尿病吃什么,控制主食\n头痛怎么办,休息,多喝水\n胃痛怎么办,就医\n',
    )
    result = read_inputs([f])
    questions = [i.prompt[-1].content for i in result.items]
    assert questions == ["糖尿病吃什么", "胃痛怎么办"]
    by_line = {r.source.line: r for r in result.rejects}
    assert set(by_line) == {2, 4}
    assert by_line[2].reason == "bad_csv" and "never closed" in by_line[2].message
    # a row with one cell too many is not "invalid_json"
    assert by_line[4].reason == "extra_fields" and "3 fields, header has 2" in by_line[4].message


def test_decontam_csv_unclosed_quote_is_a_bad_line_not_a_swallowed_file(tmp_path):
    f = _write(tmp_path / "eval.csv", 'question\n"高血压的一线用药有哪些\n糖尿病患者每日应摄入多少克碳水化合物\n')
    loaded = load_eval_texts(f)
    assert [t.text for t in loaded.texts] == ["糖尿病患者每日应摄入多少克碳水化合物"]
    assert len(loaded.bad_lines) == 1 and "eval.csv:2" in loaded.bad_lines[0]
