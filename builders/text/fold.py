"""`unicodedata.normalize("NFKC", t).lower()` for a whole batch of texts at once.

NFKC is the costliest part of matching a lexicon against short texts (~15 µs per 80-character Chinese
text: the fullwidth comma alone sends it down its slow path). Most characters of Chinese and English
text fold on their own: their NFKC + lower-case form is one character that depends on no neighbour.
For texts made only of such characters the batch is folded with one table lookup in numpy; any other
text (combining marks, Hangul, ligatures that expand, lone surrogates, ...) goes through
`unicodedata` as before, so the result is always exactly the plain expression.

A character c is "simple" when: it is in the BMP and not a surrogate; NFKC(c) and its lower case are
one character each and not Σ (whose lower case depends on the next letter); and every character of
NFKD(c) has combining class 0 and is never the second half of a canonical composition. Then NFKC of a
string of simple characters composes nothing and reorders nothing, so it is the concatenation of the
characters' own forms (tests/text/test_fold.py checks this against unicodedata).
"""

from __future__ import annotations

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


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(simple: bool per BMP code point, folded: its NFKC + lower form where simple, else itself)."""
    second = _second_halves()
    simple = np.zeros(0x10000, dtype=bool)
    folded = np.arange(0x10000, dtype=np.uint32)
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        form = unicodedata.normalize("NFKC", ch)
        if len(form) != 1 or form == "\u03a3":
            continue
        low = form.lower()
        if len(low) != 1:
            continue
        if any(unicodedata.combining(d) or ord(d) in second for d in unicodedata.normalize("NFKD", ch)):
            continue
        simple[cp] = True
        folded[cp] = ord(low)
    return simple, folded


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
    """nfkc_lower of every text, in one numpy pass over the texts whose characters are all simple."""
    simple, folded = _tables()
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if len(cps) and int(cps.max()) >= 0x10000:  # astral characters: not simple, kept as they are
        bmp = cps < 0x10000
        low = np.where(bmp, cps, 0)
        not_simple = ~(simple.take(low) & bmp)
        out = np.where(bmp, folded.take(low), cps)
    else:
        not_simple = ~simple.take(cps)
        out = folded.take(cps)  # a character that is not simple maps to itself
    try:
        mapped = out.tobytes().decode("utf-32-le")
    except UnicodeDecodeError:  # lone surrogates
        mapped = out.tobytes().decode("utf-32-le", "surrogatepass")
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    in_codes = np.ones(len(texts), dtype=bool)
    nonempty = lengths > 0
    if not_simple.any():  # texts holding a character that is not simple (an empty text holds none)
        in_codes[np.flatnonzero(nonempty)[np.add.reduceat(not_simple, starts[nonempty]) > 0]] = False
    result = [mapped[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    for i in np.flatnonzero(~in_codes).tolist():
        result[i] = nfkc_lower(texts[i])
    return Folded(result, out, starts, ends, in_codes)


def nfkc_lower_many(texts: list[str]) -> list[str]:
    """[nfkc_lower(t) for t in texts], folded in one numpy pass where every character is simple."""
    return fold_many(texts).texts if texts else []
