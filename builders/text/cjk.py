"""Chinese characters among letters: one definition of "CJK" and of the share, for quality rules and
builder checks alike."""

from __future__ import annotations


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF or 0xF900 <= o <= 0xFAFF


def cjk_share(text: str, *, no_letters: float) -> float:
    """Share of CJK characters among the letters of `text` (digits, punctuation and spaces do not
    count). A text without letters gets `no_letters`: callers say whether such a text passes (1.0,
    a quality rule that only looks for non-Chinese text) or fails (0.0, a builder that wants Chinese)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return no_letters
    return sum(is_cjk(c) for c in letters) / len(letters)
