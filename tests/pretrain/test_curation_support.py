"""Curation pieces build-pt added or changed: block-wise exact keys, character-class counts."""

from __future__ import annotations

from medmill.builders.curation import dedup
from medmill.builders.curation.text_quality import CJK, DIGIT, LETTER, SPACE, SYMBOL, char_class_counts


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
