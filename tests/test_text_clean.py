"""Cleaning textbook/guideline artefacts: page headers, broken lines, full-width spaces, citations, OCR slips."""

from __future__ import annotations

import json

from medmill.builders.readers.documents import load_documents
from medmill.builders.text.clean import CleanOptions, clean_text
from tests.test_documents_support import make_pdf


def test_fever_textbook_page_header_ocr_slips_and_glued_headings(samples_dir):
    raw = (samples_dir / "medicalgpt_pretrain_fever_textbook_sample.txt").read_text(encoding="utf-8")
    assert "\n2第一章总论\n" in raw and "—、感染的概念" in raw and "（－）病原体被清除" in raw
    result = clean_text(raw)
    lines = result.text.split("\n")
    assert "2第一章总论" not in lines  # page number + running header
    assert result.counts["running_headers"] == 1
    # "第一节感染与免疫—、感染的概念": the glued sub-heading is split off and its dash read as 一
    i = lines.index("第一节感染与免疫")
    assert lines[i + 1] == "一、感染的概念"
    assert "（一）病原体被清除" in lines and "一、传染病的发生与发展" in lines
    assert result.counts["ocr_fixed"] >= 3 and result.counts["glued_headings_split"] == 1
    assert result.counts["ocr_suspect"] >= 1  # "eme1一ging" is left alone but counted
    assert "eme1一ging" in result.text
    # paragraphs (one per line in the source) are not glued together
    assert lines[0] == "第一章论" and lines[1].startswith("传染病是指由病原微生物")


def test_book_data_citations_strip_or_keep_and_fullwidth_spaces(samples_dir):
    chunks = json.loads((samples_dir / "medicalgpt_zh_book_data_sample.json").read_text(encoding="utf-8"))
    first = chunks[0]
    assert "[11]" in first and "[12]" in first
    kept = clean_text(first)
    assert "[11]" in kept.text and kept.counts["citations_seen"] == 3
    stripped = clean_text(first, CleanOptions(citations="strip"))
    assert "[11]" not in stripped.text and "[12]" not in stripped.text
    assert "独立相关。" in stripped.text and stripped.counts["citations_stripped"] == 3
    assert "aHR=0.65" in stripped.text and "CKD3b期" in stripped.text  # digits next to text survive
    spaced = [c for c in chunks if "\u3000" in c]
    assert spaced, "the sample holds full-width spaces"
    for c in spaced:
        assert "\u3000" not in clean_text(c).text


def test_tcm_standard_section_numbers_are_joined_to_their_titles(samples_dir):
    raw = (samples_dir / "tcmchat_pretrain_book_sample.txt").read_text(encoding="utf-8")
    assert "\n3.1\n外感时令类病\n" in raw
    result = clean_text(raw)
    lines = result.text.split("\n")
    assert "3.1 外感时令类病" in lines and "3.1.1 感冒" in lines
    assert "3外感病类术语" in lines  # a numbered heading, not a page number
    assert result.counts["section_numbers_joined"] >= 10
    # synonym lines and the definitions after them stay separate lines
    assert "时令病" in lines


def test_lines_broken_mid_sentence_are_rejoined_but_not_headings_or_list_items():
    text = (
        "甲型肝炎病毒对外界抵抗力较强，耐酸碱，在室温下可存活1周，\n"
        "在干燥粪便中于25℃可存活30天。\n"
        "二、乙型肝炎病毒\n"
        "乙型肝炎病毒是嗜肝DNA病毒科的成员，完整的病毒颗粒又称Dane颗粒，由包膜与\n"
        "核心两部分组成。\n"
        "1.急性肝炎以对症治疗为主\n"
        "2.慢性乙型肝炎以抗病毒治疗为主\n"
        "短标题\n"
        "正文第一句。"
    )
    result = clean_text(text)
    lines = result.text.split("\n")
    assert (
        lines[0] == "甲型肝炎病毒对外界抵抗力较强，耐酸碱，在室温下可存活1周，在干燥粪便中于25℃可存活30天。"
    )
    assert lines[1] == "二、乙型肝炎病毒"
    assert lines[2].endswith("由包膜与核心两部分组成。")
    assert lines[3:] == [
        "1.急性肝炎以对症治疗为主",
        "2.慢性乙型肝炎以抗病毒治疗为主",
        "短标题",
        "正文第一句。",
    ]
    assert result.counts["lines_joined"] == 2
    assert clean_text(text, CleanOptions(join_lines=False)).text.count("\n") == text.count("\n")


def test_repeated_headers_and_footers_across_pages_are_dropped(tmp_path):
    pdf = tmp_path / "handbook.pdf"
    pages = [
        [
            "Clinical Handbook 2024",
            f"In part {'ABCD'[i - 1]} hypertension is diagnosed after three office readings",
            "taken on different days.",
            ["Salt intake below five grams helps.", "Exercise most days.", "Stop smoking.", "Limit alcohol."][
                i - 1
            ],
            f"Page {i} of 4",
        ]
        for i in range(1, 5)
    ]
    pdf.write_bytes(make_pdf(pages))
    doc = load_documents([pdf]).documents[0]
    result = clean_text(doc.text)
    assert "Clinical Handbook" not in result.text and "Page" not in result.text
    assert result.counts["repeated_header_lines"] == 8
    for advice in (
        "Salt intake below five grams helps.",
        "Exercise most days.",
        "Stop smoking.",
        "Limit alcohol.",
    ):
        assert advice in result.text
    # a wrapped line inside a page is rejoined with a space between Latin words
    assert "office readings taken on different days." in result.text


def test_page_number_lines_and_zero_width_characters():
    text = "第一章 总论\n正文一句。\n- 12 -\n第 3 页 共 20 页\n\u200b另一句。\n"
    result = clean_text(text)
    assert result.text.split("\n") == ["第一章 总论", "正文一句。", "另一句。"]
    assert result.counts["page_numbers"] == 2 and result.counts["zero_width_chars"] == 1


def test_a_chapter_title_repeated_as_a_running_header_is_dropped():
    text = (
        "第一章 总论\n第一节 概述\n正文一句。\n第一章 总论\n正文二句。\n第二章 各论\n第一节 概述\n正文三句。"
    )
    result = clean_text(text)
    assert result.text.split("\n") == [
        "第一章 总论",
        "第一节 概述",
        "正文一句。",
        "正文二句。",
        "第二章 各论",
        "第一节 概述",  # section titles repeat across chapters legitimately
        "正文三句。",
    ]
    assert result.counts["running_headers"] == 1


def test_a_number_wrapped_across_lines_in_chinese_text_is_not_split_by_a_space():
    text = (
        "HBV的抵抗力很强，对热、低温、干燥和紫外线均有耐受性，煮沸10分钟、6\n"
        "5℃10小时或高压蒸汽消毒可使之灭活，如1\n988年上海甲型肝炎暴发。\n"
        "the patients were enrolled in the year 2020 and\nfollowed up for 12 months."
    )
    out = clean_text(text).text
    assert "65℃10小时" in out and "如1988年" in out
    assert "2020 and followed up" in out  # Latin words still get their space


def test_a_table_of_contents_does_not_swallow_the_real_chapter_headings():
    text = (
        "目录\n第一章 总论\n第二章 病毒性疾病\n"
        "第一章 总论\n传染病是指由病原微生物感染人体后产生的有传染性的疾病。\n"
        "第一章 总论\n感染性疾病包括传染病和非传染性感染性疾病。\n"  # a running header inside chapter 1
        "第二章 病毒性疾病\n病毒性肝炎是由多种肝炎病毒引起的。\n"
    )
    result = clean_text(text)
    assert result.text.split("\n") == [
        "目录",
        "第一章 总论",
        "第二章 病毒性疾病",
        "第一章 总论",
        "传染病是指由病原微生物感染人体后产生的有传染性的疾病。",
        "感染性疾病包括传染病和非传染性感染性疾病。",
        "第二章 病毒性疾病",
        "病毒性肝炎是由多种肝炎病毒引起的。",
    ]
    assert result.counts["running_headers"] == 1


def test_gbk_crlf_text_with_a_short_line_cut_mid_sentence(tmp_path):
    path = tmp_path / "ckd.txt"
    text = "第一章 慢性肾脏病\r\n肾小球滤过率低于60\r\n的患者应评估并发症。\r\n血压控制不佳\r\n，应加用利尿剂。\r\n"
    path.write_bytes(text.encode("gbk"))
    loaded = load_documents([path])
    assert loaded.encodings == {"ckd.txt": "gb18030"}
    assert clean_text(loaded.documents[0].text).text.split("\n") == [
        "第一章 慢性肾脏病",
        "肾小球滤过率低于60的患者应评估并发症。",
        "血压控制不佳，应加用利尿剂。",
    ]


def test_pdf_text_with_a_space_between_every_chinese_character_is_despaced():
    text = "第 一 章 总 论\n高 血 压 是 以 体 循 环 动 脉 血 压 增 高 为 主 要 特 征 的 临 床 综 合 征 。\n第二章 各论\n使用 ACEI 时应监测 血钾 和 肌酐。\n"
    result = clean_text(text)
    assert result.text.split("\n") == [
        "第一章总论",
        "高血压是以体循环动脉血压增高为主要特征的临床综合征。",
        "第二章 各论",  # one space between words: left alone
        "使用 ACEI 时应监测 血钾 和 肌酐。",
    ]
    assert result.counts["cjk_spaces_removed"] == 4 + 25
