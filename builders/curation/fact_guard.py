"""Do two near-identical texts state different facts? The check that keeps dedup from merging
templated records about different things (呕吐 vs 恶心, 1型 vs 2型糖尿病, 5 mg vs 10 mg).

Jaccard alone cannot tell a copy with a few typos from a KG template filled with another disease:
both share most shingles. What differs between them can: the two texts are aligned (rapidfuzz's
Levenshtein opcodes: the fewest edits, in C++; difflib took 5 ms a pair) and the spans that differ are
checked against *fact markers*:

- terms: the protected terms a builder passes (entity names and KG values it read), plus a small
  lexicon of common medical terms (`lexicons/medical_terms.txt`);
- numbers with a unit (5mg, 38.5度, 2型, 3天; a bare number such as 问题3 is no fact);
- series characters swapped one for one (甲/乙 型肝炎, 左/右, 一/二).

A marker that occurs more often in one text than in the other is a *fact difference* when, at the
same place in the other text, another marker stands (a term replaced by a term, a number by another
number), or when it is gone altogether (less than half of its characters survive in the alignment).
A marker that merely lost a character to an edit (糖尿病 -> 糖x病) is damage, not a different fact:
that is what a light-edit copy looks like. Reordered text keeps its markers, so it is no difference.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import cache
from importlib import resources

import ahocorasick
from rapidfuzz.distance import Levenshtein

from medmill.builders.text.cjk import is_cjk

# a number with its unit is a fact (5mg, 38.5度, 2型, 3天); a bare number (问题3, list item 2) is not
NUMBER = re.compile(
    r"\d+(?:\.\d+)?\s?(?:%|‰|°c|[a-zμ]+(?:/[a-z]+)?|毫克|微克|千克|公斤|毫升|毫米|厘米|小时|分钟|周岁"
    r"|[型期度级类次片粒支袋瓶滴克斤升天日周月年岁时分秒倍个例])"
)
SUBTYPE = re.compile(r"(?<![a-z])(?:[ivx]+|[a-d])(?=[型期度级类])")  # Ⅱ型 (NFKC: ii型), iv期, b类
SERIES = ("甲乙丙丁戊己庚辛", "一二三四五六七八九十", "上下", "左右", "前后", "阴阳", "男女", "急慢", "单双")
_SERIES_OF = {ch: i for i, s in enumerate(SERIES) for ch in s}
_SERIES_CHARS = re.compile("[" + "".join(SERIES) + "]")
CACHE_TEXTS = 100_000


# full-width ASCII and the ideographic space, as NFKC maps them (Chinese text is full of ，。：（）)
_WIDE = str.maketrans({**{0xFF01 + i: 0x21 + i for i in range(0x5E)}, 0x3000: 0x20})


def normalise(text: str) -> str:
    """NFKC, lower case. Most Chinese texts are NFKC but for their full-width punctuation: that is
    mapped by a table first (what NFKC does to it), and the slow NFKC pass runs only when something
    else is left (the result is NFKC either way: NFKC starts with this very mapping)."""
    if not unicodedata.is_normalized("NFKC", text):  # the C check is 10x cheaper than normalising
        text = text.translate(_WIDE)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    return text.lower()


@cache
def lexicon_terms() -> frozenset[str]:
    """The bundled medical term list (terms separated by whitespace, `#` comments)."""
    raw = resources.files("medmill.builders.curation").joinpath("lexicons/medical_terms.txt").read_text(encoding="utf-8")
    return frozenset(w for line in raw.splitlines() for w in line.split("#", 1)[0].split())


def _usable(term: str) -> bool:
    """A term worth guarding: two or more characters with at least one letter (not a bare number)."""
    return len(term) >= 2 and any(c.isalpha() for c in term)


class FactGuard:
    """`difference(a, b)` names the first fact marker on which two texts differ, or returns None."""

    def __init__(self, protected: Iterable[str] = (), use_lexicon: bool = True) -> None:
        terms = {normalise(t).strip() for t in protected}
        if use_lexicon:
            terms |= {normalise(t) for t in lexicon_terms()}
        terms = {t for t in terms if _usable(t)}
        self.protected_terms = len(terms)
        self._cache: dict[str, tuple[str, list[tuple[int, int, str]], list[str], list[str]]] = {}
        self._automaton: ahocorasick.Automaton | None = None
        if terms:
            self._automaton = ahocorasick.Automaton()
            for t in terms:
                self._automaton.add_word(t, t)
            self._automaton.make_automaton()

    def markers(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, marker) of the terms and numbers in a normalised text, leftmost-longest, no overlaps."""
        # (start, -length, marker): a plain tuple sort is leftmost-longest (equal keys are equal markers)
        found = [(m.start(), m.start() - m.end(), m.group()) for pattern in (NUMBER, SUBTYPE) for m in pattern.finditer(text)]
        if self._automaton is not None:
            found += [(end + 1 - len(t), -len(t), t) for end, t in self._automaton.iter(text)]
        found.sort()
        out: list[tuple[int, int, str]] = []
        reach = 0
        for s, neg, t in found:
            if s >= reach:
                reach = s - neg
                out.append((s, reach, t))
        return out

    def _prepared(self, text: str) -> tuple[str, list[tuple[int, int, str]], list[str], list[str]]:
        """Normalised text, its markers, their multiset and that of its series characters (sorted lists:
        equal exactly when the counts are; cached, as a text is compared with every candidate it
        shares a bucket with)."""
        hit = self._cache.get(text)
        if hit is None:
            if len(self._cache) >= CACHE_TEXTS:
                self._cache.clear()
            norm = normalise(text)
            occ = self.markers(norm)
            hit = self._cache[text] = (norm, occ, sorted([o[2] for o in occ]), sorted(_SERIES_CHARS.findall(norm)))
        return hit

    def difference(self, a: str, b: str) -> str | None:
        (a, occ_a, count_a, series_a), (b, occ_b, count_b, series_b) = self._prepared(a), self._prepared(b)
        if a == b:
            return None
        same_markers = count_a == count_b
        if same_markers and series_a == series_b:
            return None  # nothing a fact could differ in (the common case: a copy, or a reordered one)
        ops = [tuple(op) for op in Levenshtein.opcodes(a, b)]
        return (None if same_markers else self._marker_difference(a, b, ops, occ_a, occ_b)) or _series_difference(a, b, ops)

    def _marker_difference(
        self, a: str, b: str, ops: list, occ_a: list[tuple[int, int, str]], occ_b: list[tuple[int, int, str]]
    ) -> str | None:
        count_a, count_b = Counter(t for *_, t in occ_a), Counter(t for *_, t in occ_b)
        only_a, only_b = count_a - count_b, count_b - count_a
        kept_a, kept_b = [False] * len(a), [False] * len(b)
        for tag, i1, i2, j1, j2 in ops:
            if tag == "equal":
                kept_a[i1:i2] = [True] * (i2 - i1)
                kept_b[j1:j2] = [True] * (j2 - j1)
        flipped = [(tag, j1, j2, i1, i2) for tag, i1, i2, j1, j2 in ops]
        for occ, only, other_occ, other_only, kept, other_kept, opcodes in (
            (occ_a, only_a, occ_b, only_b, kept_a, kept_b, ops),
            (occ_b, only_b, occ_a, only_a, kept_b, kept_a, flipped),
        ):
            for s, e, t in occ:
                if t not in only:
                    continue
                if NUMBER.fullmatch(t):
                    if _digits_replaced(opcodes, s, e, a if occ is occ_a else b, b if occ is occ_a else a):
                        return f"{t} ≠ {_number_at(other_occ, *_aligned(opcodes, s, e))}"
                    continue  # a digit lost or added by an edit: damage
                lo, hi = _aligned(opcodes, s, e)
                near = [(u, s2, e2) for s2, e2, u in other_occ
                        if u in other_only and u != t and not NUMBER.fullmatch(u) and s2 < max(hi, lo + 1) and e2 > lo]
                rivals = [u for u, s2, e2 in near if (u not in t and t not in u and not all(other_kept[s2:e2]))
                          or (u in t and _prefix_gone(t, u, sum(kept[s:e])))]
                if rivals:
                    return f"{t} ≠ {rivals[0]}"
                if sum(kept[s:e]) * 2 < e - s:
                    return f"{t} only in one text"
        return None


def _prefix_gone(longer: str, shorter: str, kept: int) -> bool:
    """慢性胃炎 beside 胃炎, Ⅱ型X beside Ⅰ型X: another entity when what the longer name adds is gone
    altogether and is more than one Chinese character (one lost character is what an edit does)."""
    extra = longer.replace(shorter, "", 1)
    return kept <= len(shorter) and (len(extra) >= 2 or any(not is_cjk(c) for c in extra))


def _series_difference(a: str, b: str, ops: list[tuple[str, int, int, int, int]]) -> str | None:
    """One character of a series (甲/乙, 左/右, 一/二) swapped for another of the same series."""
    for tag, i1, i2, j1, j2 in ops:
        if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1:
            x, y = a[i1], b[j1]
            if x in _SERIES_OF and _SERIES_OF[x] == _SERIES_OF.get(y):
                return f"{a[max(0, i1 - 2) : i1 + 3]} ≠ {b[max(0, j1 - 2) : j1 + 3]}"
    return None


def _digits_replaced(opcodes: list[tuple[str, int, int, int, int]], s: int, e: int, mine: str, other: str) -> bool:
    """Digits of the number at [s, e) changed *and* other digits stand in their place (5mg -> 10mg,
    0.5g -> 1.0g, 1型 -> 2型). A digit only deleted or only inserted (2015 -> 201) is what a typo does."""
    lost = gained = False
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal" or not ((i1 < e and i2 > s) or (i1 == i2 and s <= i1 <= e)):
            continue
        lost |= any(c.isdigit() for c in mine[max(i1, s) : min(i2, e)])
        gained |= any(c.isdigit() for c in other[j1:j2])
    return lost and gained


def _number_at(occ: list[tuple[int, int, str]], lo: int, hi: int) -> str:
    return next((u for s, e, u in occ if s < max(hi, lo + 1) and e > lo), "?")


def _aligned(opcodes: list[tuple[str, int, int, int, int]], s: int, e: int) -> tuple[int, int]:
    """The range of the other text that positions [s, e) of this one are aligned with."""
    lo, hi = None, None
    for tag, i1, i2, j1, j2 in opcodes:
        if not ((i1 < e and i2 > s) or (i1 == i2 and s < i1 < e)):
            continue
        if tag == "equal":
            a0, a1 = j1 + max(s, i1) - i1, j1 + min(e, i2) - i1
        else:
            a0, a1 = j1, j2
        lo = a0 if lo is None else min(lo, a0)
        hi = a1 if hi is None else max(hi, a1)
    return (lo, hi) if lo is not None and hi is not None else (0, 0)
