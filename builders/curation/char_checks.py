"""Batch-wide necessary conditions of per-text rules, from one pass of numpy table lookups over a
batch's code points: which texts surely pass a quality rule, which may hold PII. Per-character
Python (a regex search, `set(text)`) costs microseconds per short Chinese text; a table lookup
over the batch costs nanoseconds per character.

Every check here only ever says "surely fine" when the exact rule would say so; anything else
(including every text holding a character outside the BMP, which the tables do not cover) is
left to the exact rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

BMP = 0x10000


@dataclass
class CharBatch:
    """The code points of a batch of texts: `codes[starts[i]:ends[i]]` is text i (BMP characters;
    a text with any other character has `astral[i]` set and its codes clipped)."""

    codes: np.ndarray  # uint32, clipped to the BMP
    starts: np.ndarray  # int64
    ends: np.ndarray
    astral: np.ndarray  # bool per text

    @classmethod
    def of(cls, texts: list[str]) -> CharBatch:
        codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        astral = np.zeros(len(texts), bool)
        if len(codes) and int(codes.max()) >= BMP:
            astral = count_in(codes >= BMP, starts, ends) > 0
            codes = np.minimum(codes, BMP - 1)
        return cls(codes.astype(np.intp), starts, ends, astral)  # intp: what take wants

    def lookup(self, table: np.ndarray) -> np.ndarray:
        """`table` (one bool per BMP code point) at every character."""
        return table.take(self.codes)

    def count(self, table: np.ndarray) -> np.ndarray:
        """Per text: how many of its characters `table` marks."""
        return count_in(self.lookup(table), self.starts, self.ends)


CHUNK_CHARS = 4_000_000  # characters per pass: ~100 MB of temporary arrays at most


def by_chunks(check: Callable[..., np.ndarray], texts: list[str], *per_text: np.ndarray, chunk_chars: int = CHUNK_CHARS) -> np.ndarray:
    """`check(texts, *per_text)` run over runs of texts of about `chunk_chars` characters at a time, so
    the arrays of one pass stay bounded however long a batch's texts are."""
    if sum(map(len, texts)) <= chunk_chars:
        return check(texts, *per_text)
    parts, start, size = [], 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= chunk_chars or i == len(texts) - 1:
            parts.append(check(texts[start : i + 1], *(a[start : i + 1] for a in per_text)))
            start, size = i + 1, 0
    return np.concatenate(parts)


def count_in(marks: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per span [starts[i], ends[i]) of `marks` (spans in order, not overlapping): how many are set."""
    return span_reduce(np.add, marks, starts, ends, np.int64)


def span_reduce(ufunc: np.ufunc, values: np.ndarray, starts: np.ndarray, ends: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """`ufunc` reduced over each span [starts[i], ends[i]) of `values` (spans in order, not
    overlapping; empty spans give the ufunc's identity). One reduceat over the span edges."""
    if not len(starts):
        return np.zeros(0, dtype or values.dtype)
    padded = np.append(values, np.zeros(1, values.dtype))  # an edge may be len(values)
    edges = np.empty(2 * len(starts), np.intp)
    edges[0::2], edges[1::2] = starts, ends
    out = ufunc.reduceat(padded, edges, dtype=dtype)[0::2]
    out[starts == ends] = ufunc.identity
    return out


@cache
def char_table(pattern: str) -> np.ndarray:
    """Per BMP code point: whether the one-character regex `pattern` (Python `re`) matches it."""
    rx = re.compile(pattern)
    out = np.zeros(BMP, bool)
    spans = [m.span() for m in rx.finditer(_every_bmp_character())]  # one scan, not 65536 calls
    if all(end == start + 1 for start, end in spans):
        out[[start for start, _end in spans]] = True
        return out
    return np.fromiter((rx.fullmatch(chr(c)) is not None for c in range(BMP)), bool, BMP)


@cache
def _every_bmp_character() -> str:
    return "".join(map(chr, range(BMP)))


@cache
def space_table() -> np.ndarray:
    """str.isspace per BMP code point: what str.split() splits on."""
    return np.fromiter((chr(c).isspace() for c in range(BMP)), bool, BMP)


@cache
def line_break_table() -> np.ndarray:
    """The characters str.splitlines() breaks at (a text with fewer than two has fewer than three lines)."""
    return np.fromiter((len(f"a{chr(c)}a".splitlines()) > 1 for c in range(BMP)), bool, BMP)


_MULT = 0x01000193  # odd: the hash mixes every character in
_BUCKET_WORDS = 2  # 64-bit words per text in the bucket bitmap: 128 buckets


def _mult(width: int) -> np.uint32:
    return np.uint32(pow(_MULT, width, 1 << 32))


def _shifted(a: np.ndarray, k: int) -> np.ndarray:
    out = np.empty_like(a)
    out[: len(a) - k] = a[k:]
    out[len(a) - k :] = 0
    return out


def window_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """Per position p: a 32-bit polynomial hash of codes[p:p+n] (zeros past the end), built by
    doubling (log n passes instead of n)."""
    block, width = codes.astype(np.uint32), 1
    result, done = None, 0
    m = n
    while m:
        if m & 1:
            if result is None:
                result = block.copy()
            else:  # append `block` (width `width`) after the `done` characters `result` covers
                result *= _mult(width)
                result += _shifted(block, done)
            done += width
        m >>= 1
        if m:  # block of twice the width: itself, then itself `width` further on
            doubled = block * _mult(width)
            doubled += _shifted(block, width)
            block, width = doubled, width * 2
    assert result is not None
    return result


def distinct_windows_at_least(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int, need: np.ndarray) -> np.ndarray:
    """Per text (span of `codes`): True when it surely has at least `need` distinct windows of n
    characters. Equal windows hash equal, so distinct hashes (and distinct hash buckets) never
    outnumber distinct windows: a count of either that reaches `need` proves it. Buckets first (a
    bitmap per text, no sort), then distinct hashes for the texts the buckets did not settle."""
    windows = np.maximum(ends - starts - n + 1, 0)
    out = need <= 0
    todo = np.flatnonzero(~out & (windows > 0))
    if not len(todo):
        return out
    h = window_hashes(codes, n)
    first, last = starts[todo], starts[todo] + windows[todo]  # the positions where a text's windows start
    bucket = h >> np.uint32(32 - 6 - (_BUCKET_WORDS - 1).bit_length())
    bit = np.left_shift(np.uint64(1), (bucket & np.uint32(63)).astype(np.uint64))
    word = bucket >> np.uint32(6)
    found = np.zeros(len(todo), np.int64)
    for w in range(_BUCKET_WORDS):
        bits = np.where(word == w, bit, np.uint64(0)) if _BUCKET_WORDS > 1 else bit
        found += np.bitwise_count(span_reduce(np.bitwise_or, bits, first, last)).astype(np.int64)
    settled = found >= need[todo]
    out[todo[settled]] = True
    rest = todo[~settled]
    if len(rest):  # distinct hashes of the rest's windows (a text's number in the key's high bits)
        offsets = np.concatenate([[0], np.cumsum(windows[rest])[:-1]])
        at = np.repeat(starts[rest] - offsets, windows[rest]) + np.arange(int(windows[rest].sum()), dtype=np.int64)
        text = np.repeat(np.arange(len(rest), dtype=np.uint64), windows[rest])
        keys = np.sort((text << np.uint64(32)) | h[at].astype(np.uint64))
        new = np.ones(len(keys), bool)
        new[1:] = keys[1:] != keys[:-1]
        distinct = np.bincount((keys[new] >> np.uint64(32)).astype(np.int64), minlength=len(rest))
        out[rest] = distinct >= need[rest]
    return out
