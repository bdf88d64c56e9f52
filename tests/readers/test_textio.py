"""Decoding and JSON sniffing: encodings are detected and reported, layouts sniffed from content."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmill.builders.readers.textio import detect_encoding, iter_json_items, read_text, sniff_json_layout
from medmill.schemas.errors import MedmillError


@pytest.mark.parametrize(
    "data, expected",
    [
        ("高血压".encode(), "utf-8"),
        (b"\xef\xbb\xbf" + "高血压".encode(), "utf-8-sig"),
        ("高血压患者能吃党参吗".encode("gb18030"), "gb18030"),
    ],
)
def test_detect_encoding(data: bytes, expected: str):
    assert detect_encoding(data) == expected


def test_read_text_normalises_crlf_and_reports_encoding(tmp_path: Path):
    f = tmp_path / "a.csv"
    f.write_bytes("科室,问题\r\n内科,头痛\r\n".encode("gb18030"))
    d = read_text(f)
    assert d.encoding == "gb18030" and d.text == "科室,问题\n内科,头痛\n"


def test_read_text_missing_file_is_one_line_error(tmp_path: Path):
    with pytest.raises(MedmillError) as e:
        read_text(tmp_path / "nope.json")
    assert "no such file" in str(e.value) and "\n" not in str(e.value)


def test_jsonl_hiding_in_json_with_broken_line(tmp_path: Path):
    f = tmp_path / "medical.json"
    f.write_text('{ "name" : "感冒" }\n{ "name" : \n\n{"name": "头痛"}\n', encoding="utf-8")
    items = list(iter_json_items(read_text(f)))
    assert [(i.line, i.value, bool(i.error)) for i in items] == [
        (1, {"name": "感冒"}, False),
        (2, None, True),
        (4, {"name": "头痛"}, False),
    ]


def test_array_elements_get_their_start_lines(tmp_path: Path):
    f = tmp_path / "arr.json"
    f.write_text('[\n {"a": 1},\n {\n  "a": 2\n }\n]\n', encoding="utf-8")
    assert [(i.line, i.value) for i in iter_json_items(read_text(f))] == [(2, {"a": 1}), (3, {"a": 2})]


def test_layouts():
    assert sniff_json_layout('{"a":\n 1}') == "object"
    assert sniff_json_layout('{"a": 1}\n{"a": 2}') == "lines"
    assert sniff_json_layout("  [1, 2]") == "array"
    assert sniff_json_layout("input\n问题") == "none"


def test_real_samples_layouts(samples_dir: Path):
    assert sniff_json_layout(read_text(samples_dir / "qasystem_medical_sample.json").text) == "lines"
    assert sniff_json_layout(read_text(samples_dir / "huatuo_liver_cancer_sample.json").text) == "array"
    assert read_text(samples_dir / "toyhom_IM_sample.csv").encoding == "gb18030"


def test_large_array_line_numbers(tmp_path: Path):
    n = 20000
    f = tmp_path / "book_data.json"
    f.write_text("[\n" + ",\n".join(f'    "第{i}段：高血压的诊断标准。"' for i in range(n)) + "\n]\n", encoding="utf-8")
    items = list(iter_json_items(read_text(f)))
    assert [i.line for i in items[:3]] == [2, 3, 4] and items[-1].line == n + 1


def test_array_with_broken_element_trailing_comma_or_cut_short_keeps_the_rest(tmp_path: Path):
    f = tmp_path / "a.json"
    f.write_text('[\n {"a": 1},\n {"a": oops},\n {"a": 3},\n]\n', encoding="utf-8")
    items = list(iter_json_items(read_text(f)))
    assert [(i.line, i.value) for i in items if not i.error] == [(2, {"a": 1}), (4, {"a": 3})]
    assert [i.line for i in items if i.error] == [3]
    f.write_text('[\n {"a": 1},\n {"a": 2', encoding="utf-8")
    items = list(iter_json_items(read_text(f)))
    assert items[0].value == {"a": 1} and all(i.error for i in items[1:]) and items[1:]
    f.write_text('[{"a": 1}]\ngarbage\n', encoding="utf-8")
    items = list(iter_json_items(read_text(f)))
    assert items[0].value == {"a": 1} and items[1].error and "after the closing" in items[1].error and items[1].line == 2
