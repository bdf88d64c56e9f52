"""build-pt's pure parts: normalisation, document cutting, repeated paragraphs, running-text rules,
token counts and rendering of conversations."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medmill.builders.pretrain.boilerplate import BoilerplateConfig, BoilerplateRemover, ParagraphCounter
from medmill.builders.pretrain.documents import cut_text, make_documents
from medmill.builders.pretrain.normalise import normalise_text
from medmill.builders.pretrain.render import render_record
from medmill.builders.pretrain.tokens import TokenCounter, estimate_tokens
from medmill.builders.text.clean import clean_text

FIXTURES = Path(__file__).parent / "fixtures"


def test_normalise_keeps_fullwidth_punctuation_and_halves_letters_digits():
    counts: Counter = Counter()
    text = "患者体温３９．５℃，血压１２０／８０ｍｍＨｇ；（一）注意：“多饮水”！\x07"
    out = normalise_text(text, counts)
    assert out == "患者体温39．5℃，血压120／80mmHg；（一）注意：“多饮水”！"
    for ch in "，；（）：“”！":
        assert ch in out
    assert counts["fullwidth_alnum"] == 12 and counts["control_chars"] == 1


def test_t2s_converts_traditional_to_simplified():
    pytest.importorskip("opencc")
    from medmill.builders.pretrain.normalise import T2S

    counts: Counter = Counter()
    assert T2S()("醫學發燒，頭痛與咳嗽。", counts) == "医学发烧，头痛与咳嗽。"
    assert counts["t2s_chars"] == 6


def test_t2s_missing_package_is_one_line_error(monkeypatch):
    import builtins

    from medmill.builders.pretrain import normalise
    from medmill.schemas.errors import MedmillError

    real_import = builtins.__import__

    def no_opencc(name, *args, **kwargs):
        if name == "opencc":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    normalise._opencc.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_opencc)
    with pytest.raises(MedmillError, match=r"pip install 'medmill\[t2s\]'"):
        normalise.T2S()
    normalise._opencc.cache_clear()


def _fixture_text() -> str:
    return clean_text((FIXTURES / "textbook.txt").read_text(encoding="utf-8")).text


def test_fixture_textbook_comes_out_clean():
    """Running headers, page numbers and mid-sentence (and mid-page) line breaks are gone."""
    text = _fixture_text()
    lines = text.split("\n")
    assert "传染病学（第9版）" not in text
    assert not any(line.strip().isdigit() for line in lines)
    assert "可来自宿主体外，也可来自宿主体内。" in text  # broken inside a page
    assert "包括传染源、传播途径和人群易感性。" in text  # broken across a page break
    assert "如肠道中的大肠埃希菌和某些真菌。" in text
    assert all(line.endswith("。") or line.startswith("第") for line in lines)


@pytest.mark.parametrize("unit", ["file", "section", "paragraph"])
def test_documents_respect_max_and_end_on_sentences(unit):
    text = _fixture_text()
    docs = make_documents(text, unit, max_chars=150, min_chars=20)
    assert docs
    for d in docs:
        assert len(d.text) <= 150
        assert d.text == text[d.offset : d.offset + len(d.text)]
        assert d.text[-1] in "。，；", d.text  # never cut inside a clause
    # nothing lost: every sentence of the text is in some document
    body = "".join(d.text.replace("\n", "") for d in docs)
    for sentence in text.replace("\n", "").split("。"):
        assert sentence in body


def test_document_units_differ():
    text = _fixture_text()
    by_unit = {u: make_documents(text, u, max_chars=4000, min_chars=50) for u in ("file", "section", "paragraph")}
    assert len(by_unit["file"]) == 1
    assert len(by_unit["section"]) == 3  # 第一节, 第二节, 第三节 (the chapter heading joins 第一节)
    assert [d.headings[-1] for d in by_unit["section"]] == ["第一节 感染的概念", "第二节 感染过程的表现", "第三节 传染病的流行过程"]
    assert len(by_unit["paragraph"]) == 8  # one per paragraph
    # headings never stand alone: they lead the paragraph they introduce
    first = by_unit["paragraph"][0].text.split("\n")
    assert first[:2] == ["第一章 总论", "第一节 感染的概念"] and len(first) == 3


def test_long_paragraph_is_cut_at_sentence_ends():
    sentence = "高血压患者应当长期规律服药并监测血压。"
    text = sentence * 30
    pieces = cut_text(text, 0, len(text), 100)
    assert all(len(p) <= 100 and p.endswith("。") for _, p in pieces)
    assert "".join(p for _, p in pieces) == text


def test_repeated_paragraphs_counted_and_removed():
    copyright_ = "版权所有，侵权必究。人民卫生出版社2019年出版"
    topics = ["控制饮食", "规律运动", "监测血糖", "按时服药", "足部护理", "定期复查"]
    docs = [f"正文：糖尿病患者需要{t}。\n{copyright_.replace('2019', str(2010 + i))}" for i, t in enumerate(topics)]
    docs.append("只出现一次的段落：高血压的危险因素包括高盐饮食和肥胖。")
    counter = ParagraphCounter(BoilerplateConfig(min_docs=5))
    for d in docs:
        counter.add(d)
    remover = BoilerplateRemover(counter.repeated(), counter.config)
    out = [remover.strip(d) for d in docs]
    assert all("版权所有" not in d for d in out)
    assert out[-1] == docs[-1]
    assert all("糖尿病患者" in d for d in out[:6])  # the rest of each document stays
    stats = remover.stats()
    assert stats["paragraphs_removed"] == 6 and stats["documents_touched"] == 6
    assert stats["top"][0]["documents"] == 6 and "版权所有" in stats["top"][0]["paragraph"]


def test_boilerplate_threshold_and_short_lines():
    counter = ParagraphCounter(BoilerplateConfig(min_docs=5))
    for _ in range(4):
        counter.add("本文仅供参考，不能替代医生的诊断和治疗建议。\n临床表现")
    assert counter.repeated() == {}  # 4 documents < 5
    counter.add("本文仅供参考，不能替代医生的诊断和治疗建议。\n临床表现")
    assert len(counter.repeated()) == 1  # 临床表现 is a heading: too short to count
    assert ParagraphCounter(BoilerplateConfig(min_docs=0)).repeated() == {}


def test_token_estimate_is_labelled_and_scales():
    counter = TokenCounter(None)
    assert counter.method == "estimate (chars)" and not counter.exact
    assert estimate_tokens("") == 0
    assert estimate_tokens("高血压" * 100) == 200  # 300 CJK chars / 1.5
    assert estimate_tokens("word " * 100) == 100  # 400 other chars / 4


def test_token_counts_with_a_local_tokenizer(tmp_path):
    from medmill.trainers.init_model import train_tokenizer

    tok = train_tokenizer(["高血压是常见的慢性病。糖尿病需要控制血糖。"] * 50, 300)
    tok.save_pretrained(tmp_path / "tok")
    counter = TokenCounter(tmp_path / "tok")
    assert counter.exact and counter.method == "tokenizer:tok"
    texts = ["高血压是常见的慢性病。", "糖尿病"]
    assert counter.count(texts) == [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def test_bad_tokenizer_dir_is_one_line_error(tmp_path):
    from medmill.schemas.errors import MedmillError

    with pytest.raises(MedmillError, match="not a local tokenizer directory"):
        TokenCounter(tmp_path / "missing")


@pytest.mark.parametrize(
    ("record", "text"),
    [
        ({"问": "头痛怎么办？", "答": "多休息。"}, "问：头痛怎么办？\n答：多休息。"),
        ({"instruction": "解释高血压", "input": "简要", "output": "血压升高。"}, "问：解释高血压\n简要\n答：血压升高。"),
        (
            {"conversations": [{"from": "system", "value": "你是医生"}, {"from": "human", "value": "发烧"}, {"from": "gpt", "value": "测体温"}]},
            "问：发烧\n答：测体温",
        ),
        ({"messages": [{"role": "user", "content": "咳嗽"}, {"role": "assistant", "content": "多喝水"}]}, "问：咳嗽\n答：多喝水"),
        ({"title": "无关记录", "year": 2020}, None),
    ],
)
def test_render_records(record, text):
    assert render_record(record) == text
