"""Shingles, MinHash signatures and LSH band keys, computed for whole batches with numpy.

- Character n-grams (default): a text is NFKC-normalised, lower-cased, stripped of whitespace and
  punctuation, turned into code points; every n-gram is hashed arithmetically in one numpy pass
  (no per-shingle Python call). A text shorter than n is one shingle (the whole text), never dropped.
- Word n-grams (`shingle="word"`): jieba words, each hashed with xxh32, then the same n-gram pass.
- Signatures follow datasketch's affine32 scheme with its permutations for (num_perm, seed), so a
  signature equals what `datasketch.MinHash` gives for the same 32-bit shingle hashes; the min is taken per document
  with `np.minimum.reduceat` over a whole batch.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np

DEFAULT_NGRAM = {"char": 3, "word": 3}  # char 3: measured in bench/dedup.py (catches <=4 % edits at J 0.8)
_DROP = re.compile(r"[\W_]+")  # whitespace and punctuation: not part of any shingle
_count_nonzero = np.count_nonzero
_CHUNK_CELLS = 1 << 19  # shingles x permutations per numpy block (2 MB of uint32: stays in cache)


def clean_for_shingles(text: str) -> str:
    return clean_folded(unicodedata.normalize("NFKC", text).lower())


def clean_folded(folded: str) -> str:
    """clean_for_shingles of a text already NFKC-normalised and lower-cased."""
    return _DROP.sub("", folded)


@cache
def _bmp_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per BMP code point: its NFKC + lower-case form when that is one character (fullwidth Ａ１ -> a1),
    and whether it takes part in shingles (letters and digits, CJK included). A per-character table
    instead of `unicodedata.normalize` on every text: same result for Chinese, 20x faster."""
    mapped = np.arange(0x10000, dtype=np.uint32)
    kept = np.zeros(0x10000, dtype=bool)
    for i in range(0x10000):
        if 0xD800 <= i <= 0xDFFF:
            continue
        form = unicodedata.normalize("NFKC", chr(i)).lower()
        if len(form) == 1:
            mapped[i] = ord(form)
        kept[i] = form.isalnum() if len(form) == 1 else chr(i).isalnum()
    return mapped, kept


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@cache
def _poly(n: int) -> np.ndarray:
    rng = np.random.default_rng(0x5EED + n)
    return rng.integers(1, 1 << 63, size=n, dtype=np.uint64) | np.uint64(1)


def ngram_hashes(seq: np.ndarray, lengths: np.ndarray, n: int, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every n-gram of each document's unit sequence, concatenated, plus each
    document's offset into them. `seq` holds all documents' units back to back, `lengths` their sizes.

    A sequence shorter than n gives one hash (of the whole sequence); an empty one gives one hash of
    nothing, so every document has at least one shingle. `wide` gives 64-bit hashes (for large sets
    matched by equality, as in decontamination, where 32 bits would collide).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    docs = len(lengths)
    # documents laid out with n zero units after each, so no window runs into the next document
    padded = np.zeros(len(seq) + n * docs + n, dtype=np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths + n)[:-1]]) if docs else np.zeros(0, np.int64)
    padded[np.arange(len(seq), dtype=np.int64) + np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)] = seq
    windows = np.zeros(len(padded), dtype=np.uint64)
    poly = _poly(n)
    with np.errstate(over="ignore"):
        for k in range(n):
            windows[: len(padded) - k] += padded[k:] * poly[k]
        counts = np.maximum(lengths - n + 1, 1)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        pos = np.repeat(starts - offsets, counts) + np.arange(counts.sum(), dtype=np.int64)
        hashes = _splitmix(windows[pos] + np.uint64(n))
    if not wide:
        hashes = (hashes >> np.uint64(32)).astype(np.uint32)
    return hashes, offsets


def char_units(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts' letters and digits (NFKC, lower case) as one code-point array, plus per-text lengths."""
    if not texts:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    joined = "".join(t.replace("\x00", " ") + "\x00" for t in texts)  # every text ends with a 0
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    starts = np.concatenate([[0], np.flatnonzero(cps == 0)[:-1] + 1])
    mapped, kept = _bmp_tables()
    bmp = cps < 0x10000
    low = np.where(bmp, cps, 0)
    cps = np.where(bmp, mapped[low], cps)
    keep = np.where(bmp, kept[cps & 0xFFFF], True)  # separators (0) are not kept
    return cps[keep], np.add.reduceat(keep.astype(np.int64), starts)


def word_units(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """jieba words (punctuation dropped), each as its xxh32 hash, plus per-text word counts."""
    import jieba
    import xxhash

    jieba.setLogLevel(60)
    out: list[int] = []
    lengths = []
    for t in texts:
        words = [w for w in jieba.lcut(unicodedata.normalize("NFKC", t).lower()) if not _DROP.fullmatch(w)]
        out += [xxhash.xxh32_intdigest(w.encode()) for w in words]
        lengths.append(len(words))
    return np.array(out, dtype=np.uint32), np.array(lengths, dtype=np.int64)


@dataclass(frozen=True)
class MinHashParams:
    shingle: str = "char"
    ngram: int = 3
    num_perm: int = 128
    seed: int = 1

    def shingles(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        seq, lengths = char_units(texts) if self.shingle == "char" else word_units(texts)
        return ngram_hashes(seq, lengths, self.ngram)


@cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch 2.x's affine32 permutations for this num_perm and seed, drawn the way it draws them
    (a test checks they are equal), without importing datasketch, which takes seconds on a busy machine."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer, which datasketch applies to every hash value before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(docs x num_perm) uint32 MinHash signatures, datasketch's affine32 formula, blocked to bound memory."""
    a, b = permutations(num_perm, seed)
    n_docs = len(offsets)
    out = np.empty((n_docs, num_perm), dtype=np.uint32)
    ends = np.append(offsets[1:], len(hashes))
    step = max(1, _CHUNK_CELLS // num_perm)
    with np.errstate(over="ignore"):
        mixed = _fmix32(hashes.astype(np.uint32, copy=False))
        d0 = 0
        while d0 < n_docs:
            # whole docs until the block holds about `step` shingles
            d1 = max(int(np.searchsorted(offsets, offsets[d0] + step, side="right")), d0 + 1)
            s0, s1 = offsets[d0], ends[d1 - 1]
            # permutations x shingles: each row is contiguous, so the per-document min is a tight loop
            phv = a[:, None] * mixed[None, s0:s1]
            phv += b[:, None]
            out[d0:d1] = np.minimum.reduceat(phv, offsets[d0:d1] - s0, axis=1).T
            d0 = d1
    return out


@cache  # a 128 x 128 search (0.1-0.2 s): once per argument set and process, not per batch or run
def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.02, fn_weight: float = 0.98) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive / false-negative area of the S-curve.

    Weighted towards recall: every candidate is checked with exact Jaccard, so a false positive
    costs a comparison, a false negative a kept duplicate.
    """
    xs = np.linspace(0.0, 1.0, 401)
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            prob = 1.0 - (1.0 - xs**rows) ** bands
            lo, hi = xs <= threshold, xs >= threshold
            fp = np.trapezoid(prob[lo], xs[lo]) if lo.sum() > 1 else 0.0
            fn = np.trapezoid(1.0 - prob[hi], xs[hi]) if hi.sum() > 1 else 0.0
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (bands, rows), err
    return best


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs x bands) uint64 keys; two docs share a bucket when one band of rows is identical."""
    n = sigs.shape[0]
    mult = _poly(rows + 1000)[:rows]
    keys = np.empty((n, bands), dtype=np.uint64)
    step = 65_536  # rows per block: the uint64 copy of a block stays small
    with np.errstate(over="ignore"):
        for i in range(0, n, step):
            used = sigs[i : i + step, : bands * rows].astype(np.uint64).reshape(-1, bands, rows)
            keys[i : i + step] = _splitmix((used * mult).sum(axis=2, dtype=np.uint64) + np.arange(bands, dtype=np.uint64))
    return keys


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique shingle-hash arrays.

    Dedup calls this once per candidate pair (millions of times), so it is a few numpy calls: in the
    merged, sorted arrays a shared hash is the one value that appears twice, next to itself."""
    la, lb = len(a), len(b)
    if not la or not lb:
        return 1.0 if la == lb else 0.0
    merged = np.concatenate((a, b))
    merged.sort()
    inter = int(_count_nonzero(merged[1:] == merged[:-1]))
    return inter / (la + lb - inter)


def jaccard_many(sets: list[np.ndarray], b: np.ndarray) -> np.ndarray:
    """`[jaccard(a, b) for a in sets]` as float64, in a handful of numpy calls whatever len(sets): dedup
    verifies each candidate against all its kept bucket-mates at once."""
    lens = np.fromiter((len(a) for a in sets), dtype=np.int64, count=len(sets))
    flat = np.concatenate(sets) if len(sets) else np.zeros(0, b.dtype)
    return jaccard_flat(flat, lens, b)


def jaccard_flat(flat: np.ndarray, lens: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`jaccard_many` with the sets given end to end (`flat`, split by `lens`)."""
    lb = len(b)
    if not len(lens):
        return np.zeros(0, dtype=np.float64)
    if not lb:
        return np.where(lens == 0, 1.0, 0.0)
    at = np.minimum(np.searchsorted(b, flat), lb - 1)
    hits = np.concatenate(([0], np.cumsum(b[at] == flat)))
    ends = np.cumsum(lens)
    inter = hits[ends] - hits[ends - lens]
    return inter / (lens + lb - inter)


def unique_sets(hashes: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Each document's shingle hashes, sorted and unique (one sort for the whole batch)."""
    counts = np.diff(np.append(offsets, len(hashes)))
    doc = np.repeat(np.arange(len(offsets), dtype=np.uint64), counts)
    keyed = np.sort((doc << np.uint64(32)) | hashes.astype(np.uint64))  # by doc, then hash
    first = np.ones(len(keyed), dtype=bool)
    first[1:] = keyed[1:] != keyed[:-1]
    keyed = keyed[first]
    hs, ds = (keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32), keyed >> np.uint64(32)
    bounds = np.searchsorted(ds, np.arange(len(offsets) + 1, dtype=np.uint64))
    return [hs[bounds[i] : bounds[i + 1]] for i in range(len(offsets))]
