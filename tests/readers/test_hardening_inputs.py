"""Issue 12 #25 (inputs and curation): a dedup index refuses records of another kind; phone numbers
written with dots are redacted; `1、…` lines are list items, not headings; a broken PDF is one reject
row naming the file, with pypdf's own complaint in it and nothing printed."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from medmill.builders.curation.pii import PIIScanner
from medmill.builders.readers.documents import load_documents
from medmill.builders.text.sections import detect_heading, split_sections
from medmill.cli import _register, app
from medmill.schemas import PretrainRecord, Source
from medmill.schemas.errors import MedmillError
from tests.curation.test_curation_cli import ANSWERS, make_dir, sft

_register()


def test_dedup_index_refuses_records_of_another_kind(tmp_path):
    index = tmp_path / "index"
    sft_dir = make_dir(tmp_path / "s", [sft(f"问题{i}？", a, f"g{i}") for i, a in enumerate(ANSWERS)])
    pt = [PretrainRecord(id=PretrainRecord.make_id(a), text=a, source=Source(group="p", builder="t")) for a in ANSWERS]
    pt_dir = make_dir(tmp_path / "p", pt, kind="pretrain")
    runner = CliRunner()
    first = runner.invoke(app, ["dedup", str(sft_dir), "--out", str(tmp_path / "o1"), "--index", str(index)])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["dedup", str(pt_dir), "--out", str(tmp_path / "o2"), "--index", str(index)])
    assert isinstance(second.exception, MedmillError)
    assert "holds sft records; these are pretrain records" in str(second.exception)
    assert not (tmp_path / "o2").exists()
    # the same kind is still welcome
    other = make_dir(tmp_path / "s2", [sft("感冒了怎么办？", "普通感冒多能自愈，注意休息、多饮水，发热时可在医生指导下用退热药。", "c")])
    third = runner.invoke(app, ["dedup", str(other), "--out", str(tmp_path / "o3"), "--index", str(index)])
    assert third.exit_code == 0, third.output


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("电话138.1234.5678联系", True),
        ("手机：+86.138.1234.5678", True),
        ("座机0571.8888.8888", True),
        ("138 1234-5678", True),  # neighbours that worked before still do
        ("13812345678", True),
        ("体温38.5度，费用138.12元", False),
        ("指南3.1.1.2节", False),
        ("138.1234.5678.9", False),
    ],
)
def test_phone_numbers_written_with_dots(text, found):
    redacted, counts = PIIScanner(["PHONE", "IP"]).redact(text)
    assert (counts.get("PHONE", 0) == 1) is found, (redacted, counts)
    if found:
        assert "<PHONE>" in redacted and "5678" not in redacted and "8888" not in redacted


def test_numbered_list_items_are_not_headings():
    for line in ("1、多饮多尿", "2、注意休息", "1）口渴", "1) 口渴"):
        assert detect_heading(line) is None, line
    assert detect_heading("1 概述").rank < detect_heading("1.1 病因").rank
    assert detect_heading("一、概述") is not None
    text = "一、糖尿病\n典型症状有：\n1、多饮\n2、多尿\n3、体重下降\n二、高血压\n头晕。\n"
    sections = split_sections(text)
    assert [s.headings for s in sections if s.headings] == [["一、糖尿病"], ["二、高血压"]]


def test_broken_pdf_is_one_reject_naming_the_file(tmp_path, capsys):
    pytest.importorskip("pypdf")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n")
    (tmp_path / "ok.txt").write_text("高血压患者要限盐。\n", encoding="utf-8")
    logging.lastResort.setLevel(logging.WARNING)
    loaded = load_documents([tmp_path])
    out = capsys.readouterr()
    assert "EOF marker" not in out.err and "EOF marker" not in out.out
    assert [d.name for d in loaded.documents] == [f"{tmp_path.name}/ok.txt"]
    [reject] = loaded.rejects
    assert reject.reason == "unreadable_pdf"
    assert reject.message.startswith(f"{tmp_path.name}/broken.pdf: not a readable PDF")
    assert "EOF marker not found" in reject.message and "\n" not in reject.message
