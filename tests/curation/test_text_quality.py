"""Running-text rules (curation/text_quality.py) and block-wise exact dedup keys, added for build-pt."""

from __future__ import annotations

import pytest

from medmill.builders.curation import dedup
from medmill.builders.curation.text_quality import (
    CJK,
    DIGIT,
    LETTER,
    SPACE,
    SYMBOL,
    RunningTextConfig,
    char_class_counts,
    check_running_text,
    text_signals,
)


def test_exact_keys_in_blocks_equal_one_pass(monkeypatch):
    texts = [f"高血压患者第{i}例，血压{i % 7}。" for i in range(500)] + ["", "？？", "Hypertension 1"]
    whole = dedup.exact_keys(texts)
    monkeypatch.setattr(dedup, "EXACT_CHUNK_CHARS", 37)
    blocks = dedup.exact_keys(texts)
    assert (whole[0] == blocks[0]).all() and (whole[1] == blocks[1]).all()
    assert len(set(whole[0].tolist())) == len(texts)  # distinct texts, distinct keys


def test_char_class_counts():
    counts = char_class_counts("高血压 BP 120±5 mmHg ■ 𠀀")
    assert counts[CJK] == 4  # 高血压 and the extension-B character
    assert counts[LETTER] == 4 + 6  # BP, mmHg
    assert counts[DIGIT] == 4
    assert counts[SYMBOL] == 2  # ± ■
    assert counts[SPACE] == 5


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("This is an English paragraph about hypertension treatment and follow-up care.", "low_cjk_share"),
        ("■■■ ★★★ →→→ ※※※ ◆◆◆ 高血压 ■■■ ★★★ →→→", "symbol_share"),
        ("表1 血压 120 130 140 150 160 170 180 190 200 210 220 230 240 250", "digit_share"),
        ("点击这里查看更多内容\n点击这里查看更多内容\n点击这里查看更多内容\n高血压的治疗需要长期坚持", "repeated_lines"),
        ("目录\n总论\n病毒\n细菌\n真菌\n寄生虫\n附录", "short_lines"),
        ("高血压是以体循环动脉压升高为主要临床表现的心血管综合征。\n治疗包括生活方式干预和降压药物。\n需长期随访。", None),
    ],
)
def test_running_text_rules(text, reason):
    failed = check_running_text(text, RunningTextConfig())
    assert (failed[0] if failed else None) == reason


def test_running_text_rules_can_be_turned_off():
    english = "This is an English paragraph about hypertension treatment."
    assert check_running_text(english, RunningTextConfig(min_cjk_share=0)) is None
    s = text_signals("高血压 120/80")
    assert s.cjk_share == 1.0 and 0.4 < s.digit_share < 0.6


def test_batch_counts_equal_text_by_text():
    from medmill.builders.curation.text_quality import char_class_counts_many
    from tests.curation.fast_path_texts import QUALITY, SAFETY, texts

    batch = texts(2, 3000, QUALITY + SAFETY, "高血压 BP 120±5 mmHg ■ 𠀀\U0001f600\ud800#*|\n") + ["", "𠀀", " "]
    assert char_class_counts_many(batch) == [char_class_counts(t) for t in batch]
    assert char_class_counts_many([]) == []
