"""nfkc_lower_many folds simple characters with a table: it must equal unicodedata on every text."""

from __future__ import annotations

import random
import unicodedata

from medmill.builders.text.fold import _tables, nfkc_lower_many
from tests.curation.fast_path_texts import SAFETY, SAFETY_ALPHABET, texts


def plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def test_every_bmp_character_and_some_astral_ones():
    chars = [chr(c) for c in range(0x10000)] + [chr(c) for c in range(0x10000, 0x110000, 97)]
    assert nfkc_lower_many(chars) == [plain(c) for c in chars]


def test_neighbours_that_compose_reorder_or_change_case():
    """Strings of 1-6 characters from pools where neighbours interact (combining marks, Hangul jamo and
    compatibility jamo, kana voicing, final sigma, ligatures, fullwidth, CJK, surrogates, astral)."""
    pools = [
        "AaEeOoUuİıΣσςΑΩ\u0301\u0308\u0327\u0323\u0345\u03020̸=<>",
        "\u1100\u1161\u11a8\uac00\uac01\u3131\u314f\u3163\uffa1\uffc2\u11c2가각",
        "かカｶﾞﾟ\u3099\u309a\u309b\u309cはﾊ",
        "ﬁﬀ…㎏①Ａａ０，。\u3000\u2010\u2212〸\uf900\ufa30中文℃Ⅱ㈠¼\u0301",
        "\u0b47\u0b3e\u0bc6\u0bbe\u0cbf\u0cd5\u0dd9\u0dcf\u102e\u1025\u1b05\u1b35",
        "\ud800\udfff\U00020000\U0001d15e\U0001109a\U00011099\U000110ba",
    ]
    rng = random.Random(7)
    everything = "".join(pools)
    batch = []
    for _ in range(30_000):
        pool = rng.choice(pools + [everything])
        batch.append("".join(rng.choice(pool) for _ in range(rng.randint(0, 6))))
    for _ in range(10_000):  # uniform over the BMP
        batch.append("".join(chr(rng.randrange(0x10000)) for _ in range(rng.randint(1, 4))))
    assert nfkc_lower_many(batch) == [plain(t) for t in batch]


def test_lexicon_texts_and_that_the_table_is_used():
    batch = texts(3, 20_000, SAFETY, SAFETY_ALPHABET) + ["患者头痛，服用布洛芬（每日３次）ＯＫ！"]
    assert nfkc_lower_many(batch) == [plain(t) for t in batch]
    tab = _tables()
    assert tab.simple[ord("，")] and tab.folded[ord("，")] == ord(",") and tab.folded[ord("Ａ")] == ord("a")
    assert not tab.inert[ord("\u0301")] and not tab.inert[ord("\u314f")] and not tab.inert[ord("Σ")]
    assert tab.inert[ord("…")] and not tab.simple[ord("…")] and tab.expand["℃"] == "°c"
