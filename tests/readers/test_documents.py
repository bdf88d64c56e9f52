"""Text loading: files and directories, encodings, JSON arrays of strings, JSON Lines, PDF, .docx."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from medmill.builders.readers.documents import collect_files, load_documents
from medmill.schemas.errors import MedmillError
from tests.readers.test_documents_support import make_pdf


def test_real_samples_load_with_formats_encodings_and_item_lines(samples_dir):
    loaded = load_documents(
        [
            samples_dir / "medicalgpt_pretrain_fever_textbook_sample.txt",
            samples_dir / "medicalgpt_zh_book_data_sample.json",
            samples_dir / "tcmchat_pretrain_book_sample.txt",
        ]
    )
    assert loaded.rejects == []
    by_format = {d.format for d in loaded.documents}
    assert by_format == {"txt", "json"}
    book = [d for d in loaded.documents if d.format == "json"]
    assert len(book) == 30  # MedicalGPT-zh book_data: an array of 30 strings
    assert book[0].name == "medicalgpt_zh_book_data_sample.json#0" and book[0].line == 2
    assert all(d.line > 1 for d in book[1:]) and book[1].line > book[0].line
    assert book[0].text.startswith("(P=0.031)")
    assert loaded.encodings == {
        "medicalgpt_pretrain_fever_textbook_sample.txt": "utf-8",
        "medicalgpt_zh_book_data_sample.json": "utf-8",
        "tcmchat_pretrain_book_sample.txt": "utf-8",
    }


def test_examples_dir_walk_detects_gb18030_and_markdown(examples_dir):
    loaded = load_documents([examples_dir / "texts"])
    names = {d.name: d for d in loaded.documents}
    assert set(names) == {
        "texts/diabetes_notes_gb18030.txt",
        "texts/hypertension_guideline.md",
        "texts/infectious_textbook.txt",
    }
    assert names["texts/diabetes_notes_gb18030.txt"].encoding == "gb18030"
    assert "糖尿病" in names["texts/diabetes_notes_gb18030.txt"].text
    assert names["texts/hypertension_guideline.md"].format == "md"


def test_include_exclude_globs_and_hidden_files(tmp_path):
    d = tmp_path / "books"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("甲", encoding="utf-8")
    (d / "sub" / "b.md").write_text("乙", encoding="utf-8")
    (d / "sub" / "draft.txt").write_text("丙", encoding="utf-8")
    (d / ".hidden.txt").write_text("丁", encoding="utf-8")
    (d / "image.png").write_bytes(b"\x89PNG")
    names = [n for _, n in collect_files([d])]
    assert names == ["books/a.txt", "books/sub/b.md", "books/sub/draft.txt"]
    names = [n for _, n in collect_files([d], include=["*.txt"], exclude=["sub/draft*"])]
    assert names == ["books/a.txt"]
    with pytest.raises(MedmillError, match="no such file"):
        collect_files([tmp_path / "missing"])
    with pytest.raises(MedmillError, match="no input files"):
        load_documents([d], include=["*.pdf"])


def test_json_lines_text_field_and_rejects_with_lines(tmp_path):
    f = tmp_path / "corpus.txt"  # JSON Lines hiding in a .txt
    f.write_text(
        "\n".join(
            [
                json.dumps({"text": "高血压是常见的慢性病。"}, ensure_ascii=False),
                json.dumps({"title": "没有正文"}, ensure_ascii=False),
                "{broken",
                json.dumps({"content": "糖尿病需要长期管理。"}, ensure_ascii=False),
                json.dumps(["a list"]),
            ]
        ),
        encoding="utf-8",
    )
    loaded = load_documents([f])
    assert [d.text for d in loaded.documents] == ["高血压是常见的慢性病。", "糖尿病需要长期管理。"]
    assert [d.line for d in loaded.documents] == [1, 4]
    reasons = {(r.reason, r.source.line) for r in loaded.rejects}
    assert reasons == {("no_text_field", 2), ("invalid_json", 3), ("not_text", 5)}
    assert all(r.source.file == "corpus.txt" for r in loaded.rejects)
    only_title = load_documents([f], text_field="title")
    assert [d.text for d in only_title.documents] == ["没有正文"]


def test_text_that_starts_like_json_stays_text(tmp_path):
    f = tmp_path / "refs.txt"
    f.write_text("[1] 参考文献一。\n[2] 参考文献二。\n", encoding="utf-8")
    loaded = load_documents([f])
    assert loaded.rejects == [] and loaded.documents[0].format == "txt"


def test_undecodable_and_empty_files_are_rejects_not_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa\x00\x81")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    loaded = load_documents([bad, empty])
    assert loaded.documents == []
    assert sorted(r.reason for r in loaded.rejects) == ["empty", "undecodable"]


def test_pdf_pages_are_joined_with_form_feeds(tmp_path):
    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(
        make_pdf([["Clinical Handbook", f"Body text of page {i}.", f"- {i} -"] for i in (1, 2, 3)])
    )
    loaded = load_documents([pdf])
    assert loaded.rejects == []
    doc = loaded.documents[0]
    assert doc.format == "pdf" and doc.pages == 3
    assert doc.text.count("\f") == 2 and "Body text of page 2." in doc.text


def test_broken_pdf_is_a_reject(tmp_path):
    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.4\nnot really a pdf")
    loaded = load_documents([pdf])
    assert loaded.documents == [] and loaded.rejects[0].source.file == "broken.pdf"


def test_missing_pdf_extra_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf([["x"]]))
    monkeypatch.setitem(sys.modules, "pypdf", None)
    with pytest.raises(MedmillError, match=r"medmill\[pdf\]"):
        load_documents([pdf])


def test_docx_headings_become_markdown_and_tables_are_kept(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("高血压管理", level=1)
    document.add_heading("诊断", level=2)
    document.add_paragraph("非同日3次测量诊室血压，收缩压≥140 mmHg可诊断。")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "药物"
    table.rows[0].cells[1].text = "ACEI"
    path = tmp_path / "guide.docx"
    document.save(path)
    loaded = load_documents([path])
    text = loaded.documents[0].text
    assert loaded.documents[0].format == "docx"
    assert text.splitlines()[:3] == [
        "# 高血压管理",
        "## 诊断",
        "非同日3次测量诊室血压，收缩压≥140 mmHg可诊断。",
    ]
    assert "药物 | ACEI" in text


def test_missing_docx_extra_is_a_one_line_error(tmp_path, monkeypatch):
    import docx

    path = tmp_path / "a.docx"
    docx.Document().save(path)
    monkeypatch.setitem(sys.modules, "docx", None)
    with pytest.raises(MedmillError, match=r"medmill\[docx\]"):
        load_documents([path])


def test_object_keyed_by_index_is_a_collection_medicalgpt_zh_book_based_qa(samples_dir):
    # {"27": {"指南": chunk, "qa_pairs": [...]}, ...}: each value is a document, named by its key
    loaded = load_documents([samples_dir / "medicalgpt_zh_book_based_qa_sample.json"])
    assert loaded.rejects == []
    names = [d.name for d in loaded.documents]
    assert names == [f"medicalgpt_zh_book_based_qa_sample.json#{k}" for k in ("27", "26", "25")]
    assert loaded.documents[0].text.startswith("患者获益;相反减少热卡摄入")


def test_an_ordinary_single_object_is_still_one_record(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"text": "高血压的诊断标准是收缩压≥140 mmHg。", "1": "x"}, ensure_ascii=False))
    loaded = load_documents([path])
    assert [d.name for d in loaded.documents] == ["one.json#0"]


@pytest.mark.parametrize(
    "encoding, expected",
    [("utf-16", "UTF-16 text (byte order mark)"), ("utf-16-le", "NUL bytes"), ("utf-16-be", "NUL bytes")],
)
def test_utf16_is_rejected_with_a_clear_reason_never_read_as_gb18030_mojibake(tmp_path, encoding, expected):
    path = tmp_path / "guide.txt"
    path.write_bytes("第一章 高血压\n高血压是以体循环动脉血压增高为主要特征的临床综合征。\n".encode(encoding))
    loaded = load_documents([path])
    assert loaded.documents == []
    assert [r.reason for r in loaded.rejects] == ["undecodable"]
    assert expected in loaded.rejects[0].message and "convert" in loaded.rejects[0].message


def test_current_directory_input_names_files_by_the_directory_name(tmp_path, monkeypatch):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("高血压的诊断标准是收缩压≥140 mmHg。", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "books")
    assert [n for _, n in collect_files([Path(".")])] == ["books/a.txt"]  # not "/a.txt"


def test_docx_title_sits_above_heading_1_and_merged_cells_appear_once(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("糖尿病诊疗要点", 0)  # the Title style
    document.add_heading("第一章 诊断", 1)
    document.add_paragraph("空腹血糖≥7.0 mmol/L可诊断糖尿病。")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "诊断标准"
    table.cell(1, 0).text = "空腹血糖"
    table.cell(1, 1).text = "≥7.0"
    path = tmp_path / "dm.docx"
    document.save(path)
    lines = load_documents([path]).documents[0].text.splitlines()
    assert lines[:2] == ["# 糖尿病诊疗要点", "## 第一章 诊断"]
    assert "诊断标准" in lines and "空腹血糖 | ≥7.0" in lines


def test_two_inputs_with_one_file_name_keep_apart(tmp_path, monkeypatch):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "guide.txt").write_text(f"{d}：高血压的诊断标准是收缩压≥140 mmHg。", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    loaded = load_documents([Path("a/guide.txt"), Path("b/guide.txt"), Path("a/guide.txt")])
    assert [d.name for d in loaded.documents] == ["a/guide.txt", "b/guide.txt"]


def test_a_docx_with_broken_xml_is_a_reject_not_a_traceback(tmp_path):
    import zipfile

    import docx

    good = tmp_path / "good.docx"
    document = docx.Document()
    document.add_paragraph("高血压的诊断标准是收缩压≥140 mmHg。")
    document.save(good)
    broken = tmp_path / "broken.docx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[: len(data) // 2] if item.filename == "word/document.xml" else data)
    loaded = load_documents([broken, good])
    assert [d.name for d in loaded.documents] == ["good.docx"]
    assert [r.reason for r in loaded.rejects] == ["unreadable_docx"]
    assert loaded.rejects[0].message.startswith("broken.docx: XMLSyntaxError")
