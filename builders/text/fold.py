"""`unicodedata.normalize("NFKC", t).lower()` for a whole batch of texts at once.

NFKC is the costliest part of matching a lexicon against short texts (~15 µs per 80-character Chinese
text: the fullwidth comma alone sends it down its slow path). Most characters of Chinese and English
text fold on their own: their NFKC + lower-case form is one character that depends on no neighbour.
For texts made only of such characters the batch is folded with one table lookup in numpy; any other
text (combining marks, Hangul, ligatures that expand, lone surrogates, ...) goes through
`unicodedata` as before, so the result is always exactly the plain expression.

A character c is "inert" when: it is in the BMP and not a surrogate; NFKC(c) holds no Σ (whose lower
case depends on the next letter); and every character of NFKD(c) has combining class 0 and is never
the second half of a canonical composition. Then NFKC of a string of inert characters composes and
reorders nothing, so it is the concatenation of the characters' own forms (tests/text/test_fold.py
checks this against unicodedata). An inert character is "simple" when its form is one character:
those are folded by the table; the others (… -> ..., ℃ -> °c) are put in by a regex afterwards.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np


@cache
def _second_halves() -> frozenset[int]:
    """Code points that end a two-character canonical decomposition (the ones a composition joins on)."""
    out = set()
    for cp in range(0x20000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                out.add(int(parts[1], 16))
    # Hangul composes algorithmically (no table entry): L + V -> LV, LV + T -> LVT
    out.update(range(0x1161, 0x1176), range(0x11A8, 0x11C3))
    return frozenset(out)


_IDEOGRAPHS = ((0x3400, 0x4DC0), (0x4E00, 0xA000))  # CJK Unified Ideographs (Extension A and the main block)


@dataclass(frozen=True)
class _Tables:
    simple: np.ndarray  # bool per BMP code point: folds to one character on its own
    folded: np.ndarray  # that character where simple, else the code point itself
    inert: np.ndarray  # simple, or folds on its own to several characters (… -> ..., ℃ -> °c)
    expand: dict[str, str]  # the several characters of each inert character that is not simple
    expanding: re.Pattern[str]  # any character of `expand`


@cache
def _tables() -> _Tables:
    second = _second_halves()
    simple = np.zeros(0x10000, dtype=bool)
    inert = np.zeros(0x10000, dtype=bool)
    folded = np.arange(0x10000, dtype=np.uint32)
    expand: dict[str, str] = {}
    for lo, hi in _IDEOGRAPHS:  # no decomposition, no case: they fold to themselves
        simple[lo:hi] = inert[lo:hi] = True
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF or simple[cp]:
            continue
        ch = chr(cp)
        form = unicodedata.normalize("NFKC", ch)
        if "\u03a3" in form:  # Σ: its lower case depends on the next letter
            continue
        if any(unicodedata.combining(d) or ord(d) in second for d in unicodedata.normalize("NFKD", ch)):
            continue
        low = form.lower()
        inert[cp] = True
        if len(low) == 1 and len(form) == 1:
            simple[cp] = True
            folded[cp] = ord(low)
        else:
            expand[ch] = low
    # expanding characters are replaced in the folded text, so no simple character may fold into one
    clashes = {ord(ch) for ch in expand} & set(folded[simple].tolist())
    for value in clashes:
        clash = simple & (folded == value)
        simple[clash] = inert[clash] = False
        folded[clash] = np.flatnonzero(clash).astype(np.uint32)
    expanding = re.compile("[" + "".join(re.escape(c) for c in sorted(expand)) + "]") if expand else re.compile("(?!)")
    return _Tables(simple, folded, inert, expand, expanding)


def nfkc_lower(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


@dataclass
class Folded:
    """A batch folded: `texts[i]` is nfkc_lower of the i-th input; where `in_codes[i]`, the same text
    is also `codes[starts[i]:ends[i]]` (code points), so batch-wide numpy checks can read it."""

    texts: list[str]
    codes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    in_codes: np.ndarray


def fold_many(texts: list[str]) -> Folded:
    """nfkc_lower of every text, in one numpy pass over the texts whose characters are all inert
    (those with an expanding character get its expansion put in afterwards)."""
    tab = _tables()
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if len(cps) and int(cps.max()) >= 0x10000:  # astral characters: not inert, kept as they are
        bmp = cps < 0x10000
        low = np.where(bmp, cps, 0)
        not_simple = ~(tab.simple.take(low) & bmp)
        not_inert = ~(tab.inert.take(low) & bmp)
        out = np.where(bmp, tab.folded.take(low), cps)
    else:
        at = cps.astype(np.intp)  # take casts its indices to intp: once, not three times
        not_simple = ~tab.simple.take(at)
        not_inert = ~tab.inert.take(at)
        out = tab.folded.take(at)  # a character that is not simple maps to itself
    try:
        mapped = out.tobytes().decode("utf-32-le")
    except UnicodeDecodeError:  # lone surrogates
        mapped = out.tobytes().decode("utf-32-le", "surrogatepass")
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    result = [mapped[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    in_codes = np.ones(len(texts), dtype=bool)
    if not_simple.any():  # texts holding a character that is not simple (an empty text holds none)
        nonempty = np.flatnonzero(lengths > 0)
        offsets = starts[nonempty]
        in_codes[nonempty[np.add.reduceat(not_simple, offsets) > 0]] = False
        plain = set(nonempty[np.add.reduceat(not_inert, offsets) > 0].tolist()) if not_inert.any() else set()
        for i in np.flatnonzero(~in_codes).tolist():
            if i in plain:
                result[i] = nfkc_lower(texts[i])
            else:
                result[i] = tab.expanding.sub(lambda m: tab.expand[m.group()], result[i])
    return Folded(result, out, starts, ends, in_codes)


def nfkc_lower_many(texts: list[str]) -> list[str]:
    """[nfkc_lower(t) for t in texts], folded in one numpy pass where every character is simple."""
    return fold_many(texts).texts if texts else []
