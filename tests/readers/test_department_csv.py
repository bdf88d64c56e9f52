"""Toyhom department CSVs: GB18030, quoted multi-line fields, the 无 placeholder, rejects with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmill.builders.readers.department_csv import read_department_csv
from medmill.schemas.errors import MedmillError
from tests.tasks.test_cls import write


def test_reader_gb18030_multiline_fields_placeholder_and_rejects(tmp_path: Path) -> None:
    read = read_department_csv([write(tmp_path / "内科.csv")])
    assert [(q.department, q.line) for q in read.questions] == [("心血管科", 2), ("神经科", 3), ("心血管科", 5),
                                                               ("神经科", 8)]
    assert read.questions[1].question == "小孩癫痫有什么特征"  # ask 无 is a placeholder
    assert read.questions[2].question == "心慌怎么办\n最近心慌, 胸闷"
    assert sorted((r.reason, r.source.line) for r in read.rejects) == [("no_department", 6), ("wrong_field_count", 7)]
    assert read.counters["encodings.gb18030"] == 1


def test_not_a_department_csv_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(MedmillError, match="department,title,ask,answer"):
        read_department_csv([bad])


def test_a_quote_never_closed_is_one_reject_and_later_rows_are_read(tmp_path: Path) -> None:
    """Left to itself the csv module puts every row after an unclosed quote into that one cell."""
    path = tmp_path / "外科.csv"
    rows = [f"外科,腰痛{i}怎么办,腰痛{i}天了,建议就诊" for i in range(6)]
    rows[2] = '外科,"膝盖疼,走路疼,建议拍片'  # the quote opened on line 4 never closes
    path.write_text("department,title,ask,answer\n" + "\n".join(rows) + "\n", encoding="utf-8")
    read = read_department_csv([path])
    assert [q.line for q in read.questions] == [2, 3, 5, 6, 7]
    assert [(r.reason, r.source.line) for r in read.rejects] == [("csv_error", 4)]
    assert "never closed" in read.rejects[0].message and read.rejects[0].message.startswith(f"{path}:4:")
