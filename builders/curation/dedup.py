"""Exact and near-duplicate detection over a list of texts, optionally against a persisted index.

How a duplicate is decided (deterministic, documented in the README of `medmill dedup`):

1. Exact: two texts are the same when their letters and digits are (NFKC, lower case; whitespace and
   punctuation ignored). The first one is kept.
2. Near: MinHash signatures (`minhash.py`) are cut into LSH bands; texts sharing a band bucket are
   candidates. Candidates are checked with the exact Jaccard similarity of their shingle sets.
   The LSH bands are tuned for `threshold - candidate_margin` (0.05), so pairs just above the threshold
   are rarely missed (light-edit copies of ~230-character dialogues sit at Jaccard 0.6-0.9).
3. Fact guard (`fact_guard.py`): a pair at or above the threshold is a duplicate only when the two
   texts do not state different facts - differing entity names or KG values (the protected terms a
   builder passes), medical terms of the bundled lexicon, numbers with units. Templated records about
   two diseases are alike in shingles, not in facts; such pairs are counted as `fact_guarded_pairs`.
4. Representative rule: texts are visited in order - the index (earlier runs) first, then the inputs
   in the order given. A text is removed when its exact Jaccard with an already *kept* text is at or
   above the threshold and the fact guard finds no difference; it names the most similar such kept
   text (earliest on ties). Otherwise it is kept. A removed text never makes another one a duplicate,
   so there are no chains: every removal is within the threshold of the text it names.

Only texts that share a bucket with another text enter the Python loop; the rest are kept by numpy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.fact_guard import FactGuard

if TYPE_CHECKING:
    import pyarrow as pa

PARALLEL_MIN_DOCS = 20_000  # below this, processes cost more than they save
CHUNK_DOCS = 10_000
DEFAULT_THRESHOLD = 0.6  # bench/dedup.py: recall of 1-5 % edit copies ~0.72 at 0.8; the fact guard keeps precision
GUARD_EXAMPLES = 20  # fact-guarded pairs kept in the stats (manifest) as examples


@dataclass
class DedupConfig:
    threshold: float = DEFAULT_THRESHOLD
    shingle: str = "char"
    ngram: int = 0  # 0 = mh.DEFAULT_NGRAM[shingle]
    num_perm: int = 128
    seed: int = 1
    workers: int = 0  # 0 = every core this process may use
    max_compare: int = 64  # exact comparisons per candidate text (bounds pathological buckets)
    candidate_margin: float = 0.05  # LSH tuned this far below the threshold (recall near it)
    fact_guard: bool = True  # keep pairs whose differing spans are different facts
    protected_terms: frozenset[str] = frozenset()  # entity names / KG values a builder read

    def guard(self) -> FactGuard | None:
        return FactGuard(self.protected_terms) if self.fact_guard else None

    @property
    def params(self) -> mh.MinHashParams:
        return mh.MinHashParams(self.shingle, self.ngram or mh.DEFAULT_NGRAM[self.shingle], self.num_perm, self.seed)

    @property
    def bands_rows(self) -> tuple[int, int]:
        return mh.lsh_params(max(0.05, self.threshold - self.candidate_margin), self.num_perm)


@dataclass
class Reference:
    """Texts from earlier runs (an index): always kept, always first."""

    exact: np.ndarray  # uint64 per text
    sigs: np.ndarray  # (n x num_perm) uint32
    texts: list[str]


@dataclass
class DedupResult:
    """Per input text: `dup_of` = -1 (kept) or the position of the kept text it duplicates, where
    positions 0..R-1 are reference texts and R.. are inputs; `similarity` (1.0 for exact copies)."""

    dup_of: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray
    sigs: np.ndarray  # signatures of the inputs (zeros for exact copies), for the index
    keys: np.ndarray  # exact keys of the inputs
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def keep(self) -> np.ndarray:
        return self.dup_of < 0


EXACT_CHUNK_CHARS = 4_000_000  # characters per exact-key block: bounds the uint64 temporaries


def exact_keys(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit key per text over its letters and digits (texts with none fall back to their raw form),
    and the number of letters and digits of each text. Computed in blocks of about
    EXACT_CHUNK_CHARS characters, so a corpus of hundreds of MB never becomes one uint64 array."""
    if not texts:
        return _exact_keys_block(texts)
    keys, lengths = [], []
    start = size = 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= EXACT_CHUNK_CHARS:
            k, n = _exact_keys_block(texts[start : i + 1])
            keys.append(k)
            lengths.append(n)
            start, size = i + 1, 0
    if start < len(texts):
        k, n = _exact_keys_block(texts[start:])
        keys.append(k)
        lengths.append(n)
    return np.concatenate(keys), np.concatenate(lengths)


def _exact_keys_block(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import xxhash

    seq, lengths = mh.char_units(texts)
    n = len(texts)
    keys = np.zeros(n, dtype=np.uint64)
    if len(seq):
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        pos = np.arange(len(seq), dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
        with np.errstate(over="ignore"):
            mixed = mh._splitmix(seq.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + pos)
            nonempty = lengths > 0
            sums = np.add.reduceat(mixed, starts[nonempty]) if nonempty.any() else np.zeros(0, np.uint64)
            keys[nonempty] = mh._splitmix(sums + lengths[nonempty].astype(np.uint64))
    for i in np.flatnonzero(lengths == 0):
        keys[i] = np.uint64(xxhash.xxh3_64_intdigest(" ".join(texts[i].split()).encode()))
    return keys, lengths


def verify_pair(
    kept_text: str,
    text: str,
    config: DedupConfig,
    kept_set: np.ndarray | None = None,
    text_set: np.ndarray | None = None,
) -> float | None:
    """The check that turns an LSH candidate pair into a near-duplicate: the exact Jaccard of the two
    texts' shingle sets when it reaches `config.threshold`, else None. `decide` (every dedup path: in
    memory, streamed, Ray) runs the same check as `verify_many`, one text against its kept candidates."""
    params = config.params
    if kept_set is None:
        kept_set = mh.unique_sets(*params.shingles([kept_text]))[0]
    if text_set is None:
        text_set = mh.unique_sets(*params.shingles([text]))[0]
    sim = mh.jaccard(kept_set, text_set)
    return sim if sim >= config.threshold else None


def verify_many(kept_sets: list[np.ndarray], text_set: np.ndarray, config: DedupConfig) -> np.ndarray:
    """`verify_pair` of one text against several kept texts at once, from their shingle sets: the exact
    Jaccard of each pair (a pair is a near-duplicate where it reaches `config.threshold`)."""
    return mh.jaccard_many(kept_sets, text_set)


def _sig_chunk(args: tuple[list[str], mh.MinHashParams]) -> np.ndarray:
    texts, params = args
    hashes, offsets = params.shingles(texts)
    return mh.signatures(hashes, offsets, params.num_perm, params.seed)


def compute_signatures(texts: list[str], params: mh.MinHashParams, workers: int = 0) -> np.ndarray:
    """Signatures of all texts, on every core for large inputs, in chunks to bound memory."""
    if not texts:
        return np.zeros((0, params.num_perm), dtype=np.uint32)
    workers = workers or len(os.sched_getaffinity(0))
    chunks = [(texts[i : i + CHUNK_DOCS], params) for i in range(0, len(texts), CHUNK_DOCS)]
    if workers <= 1 or len(texts) < PARALLEL_MIN_DOCS:
        return np.concatenate([_sig_chunk(c) for c in chunks])
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        return np.concatenate(list(pool.map(_sig_chunk, chunks)))


def find_duplicates(texts: list[str], config: DedupConfig, reference: Reference | None = None) -> DedupResult:
    """The decision over texts held in memory: their compact state (exact keys, band keys), then
    `decide` - the same function the streamed and Ray runs call with texts read back from a spill."""
    import pyarrow as pa

    params = config.params
    bands, rows = config.bands_rows
    keys, units = exact_keys(texts)
    sigs = np.zeros((len(texts), params.num_perm), dtype=np.uint32)
    todo = np.flatnonzero(units > 0)  # a text without letters or digits ("？？") has only its exact form
    sigs[todo] = compute_signatures([texts[i] for i in todo], params, config.workers)
    band = mh.band_keys(sigs, bands, rows)
    band[units == 0] = 0
    decision = decide(keys, units, band, config, lambda pos: pa.array([texts[i] for i in pos.tolist()], pa.string()), reference)
    sigs[decision.exact] = 0
    return DedupResult(decision.dup_of, decision.similarity, decision.exact, sigs, keys, decision.stats)


# --- the decision from compact state ----------------------------------------------------------------

TEXT_CHUNK = 50_000  # candidate texts shingled per block
TextFetch = Callable[[np.ndarray], "pa.Array"]  # sorted input positions -> their compared texts


@dataclass
class Decision:
    """Per input record: `dup_of` -1 (kept) or the position of the kept one (reference positions
    0..R-1 first, then inputs R..), `similarity`, `exact`; like `DedupResult` without signatures."""

    dup_of: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray
    keys: np.ndarray  # exact keys of the inputs
    stats: dict[str, Any]

    @property
    def keep(self) -> np.ndarray:
        return self.dup_of < 0


def _exact_pass(keys: np.ndarray, reference: Reference | None, n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """dup_of and exact flags for exact copies: of a reference text, else of the first input with the key."""
    n = len(keys)
    dup_of = np.full(n, -1, dtype=np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first_pos = first[inverse.reshape(-1)]
    later = first_pos != np.arange(n)
    dup_of[later] = n_ref + first_pos[later]
    if reference is not None and n_ref:
        ref_keys, ref_first = np.unique(reference.exact, return_index=True)
        at = np.minimum(np.searchsorted(ref_keys, keys), len(ref_keys) - 1)
        hit = ref_keys[at] == keys
        dup_of[hit] = ref_first[at[hit]]
    return dup_of, dup_of >= 0


def _shared_mask(keys: np.ndarray) -> np.ndarray:
    """(docs,) bool: the doc shares at least one band bucket with another doc."""
    shared = np.zeros(keys.shape[0], dtype=bool)
    for band in range(keys.shape[1]):
        _, inverse, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
        shared |= counts[inverse.reshape(-1)] > 1
    return shared


def _bucket_ids(keys: np.ndarray) -> np.ndarray:
    """(rows, bands) int64 dense bucket ids; -1 where nobody else is in the bucket."""
    out = np.full(keys.shape, -1, dtype=np.int64)
    base = 0
    for band in range(keys.shape[1]):
        uniq, inverse, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        out[:, band] = np.where(counts[inverse] > 1, base + inverse, -1)
        base += len(uniq)
    return out


class _Sets:
    """Shingle sets of a list of texts, flat (one array + bounds), sliced on demand."""

    def __init__(self, texts: pa.Array, config: DedupConfig) -> None:
        params = config.params
        flats, bounds, at = [], [np.zeros(1, np.int64)], 0
        for start in range(0, len(texts), TEXT_CHUNK):
            chunk = texts.slice(start, TEXT_CHUNK).to_pylist()
            sets = mh.unique_sets(*params.shingles(chunk))
            sizes = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
            flats.append(np.concatenate(sets) if sets else np.zeros(0, np.uint32))
            bounds.append(at + np.cumsum(sizes))
            at += int(sizes.sum())
        self.flat = np.concatenate(flats) if flats else np.zeros(0, np.uint32)
        self.bounds = np.concatenate(bounds)

    def __getitem__(self, j: int) -> np.ndarray:
        return self.flat[self.bounds[j] : self.bounds[j + 1]]

    def many(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sets of `rows` end to end, and their lengths (one gather, no per-row arrays)."""
        starts, lens = self.bounds[rows], self.bounds[rows + 1] - self.bounds[rows]
        offsets = np.cumsum(lens) - lens
        return self.flat[np.repeat(starts - offsets, lens) + np.arange(int(lens.sum()))], lens


def decide(
    exact_keys_: np.ndarray,
    units: np.ndarray,
    band_keys: np.ndarray,
    config: DedupConfig,
    fetch: TextFetch,
    reference: Reference | None = None,
) -> Decision:
    """The one dedup decision (module docstring, steps 1-4), from compact per-record state: exact keys,
    letter counts, LSH band keys. Only the texts of LSH candidates are asked for, through `fetch`."""
    import pyarrow as pa

    params = config.params
    bands, rows = config.bands_rows
    n_ref = len(reference.texts) if reference is not None else 0
    n = len(exact_keys_)
    dup_of, exact = _exact_pass(exact_keys_, reference, n_ref)
    similarity = np.where(exact, 1.0, 0.0)

    # inputs sharing a bucket with another input or with the index; index texts sharing one with an input
    todo = np.flatnonzero(~exact & (units > 0))
    new_keys = band_keys[todo]
    ref_keys = mh.band_keys(reference.sigs, bands, rows) if n_ref and reference is not None else np.zeros((0, bands), np.uint64)
    new_shared = _shared_mask(new_keys) if len(todo) else np.zeros(0, bool)
    ref_touched = np.zeros(n_ref, dtype=bool)
    for b in range(bands) if n_ref else ():
        new_shared |= np.isin(new_keys[:, b], ref_keys[:, b])
        ref_touched |= np.isin(ref_keys[:, b], new_keys[:, b])
    cand = todo[new_shared]
    stats: dict[str, Any] = {
        "shingle": params.shingle,
        "ngram": params.ngram,
        "num_perm": params.num_perm,
        "bands": bands,
        "rows": rows,
        "threshold": config.threshold,
        "fact_guard": config.fact_guard,
        "protected_terms": len(config.protected_terms),
        "exact_duplicates": int(exact.sum()),
        "lsh_candidates": int(len(cand)),
    }
    compared = verified = 0
    guard = config.guard()
    guarded: list[dict[str, Any]] = []
    if len(cand):
        ref_cand = np.flatnonzero(ref_touched)
        texts = pa.concat_arrays(
            [pa.array([reference.texts[g] for g in ref_cand] if reference is not None else [], pa.string()), fetch(cand)]
        )
        sets = _Sets(texts, config)
        # rows of the candidate table: reference candidates first, then input candidates
        glob = np.concatenate([ref_cand, n_ref + cand])
        bucket = _bucket_ids(np.concatenate([ref_keys[ref_cand], band_keys[cand]]))
        members: dict[int, list[int]] = {}
        for j in range(len(ref_cand)):
            for bid in bucket[j].tolist():
                if bid >= 0:
                    members.setdefault(bid, []).append(int(glob[j]))
        for j in range(len(ref_cand), len(glob)):
            me = int(glob[j])
            my_buckets = [bid for bid in bucket[j].tolist() if bid >= 0]
            seen: set[int] = set()
            for bid in my_buckets:
                # each bucket's kept list grows in visiting order (ascending), so the max_compare smallest
                # of the union are among each list's first max_compare: no pass over a crowded bucket
                seen.update(members.get(bid, ())[: config.max_compare])
            best, best_sim = -1, -1.0
            if seen:
                my_set = sets[j]
                kept_rows = sorted(seen)[: config.max_compare]
                flat, lens = sets.many(np.searchsorted(glob, kept_rows))  # glob is sorted: its row of each
                sims = mh.jaccard_flat(flat, lens, my_set)  # verify_many, from the gathered sets
                compared += len(kept_rows)
                above = [(-sim, g) for sim, g in zip(sims.tolist(), kept_rows, strict=True) if sim >= config.threshold]
                for neg_sim, g in sorted(above):  # most similar first, earliest on ties
                    why = guard.difference(texts[int(np.searchsorted(glob, g))].as_py(), texts[j].as_py()) if guard is not None else None
                    if why is None:
                        best, best_sim = g, -neg_sim
                        break
                    guarded.append({"kept": g, "other": me - n_ref, "similarity": round(-neg_sim, 4), "difference": why})
            i = me - n_ref
            if best >= 0:
                dup_of[i], similarity[i] = best, best_sim
                verified += 1
            else:
                for bid in my_buckets:
                    members.setdefault(bid, []).append(me)
    stats["exact_comparisons"] = compared
    stats["near_duplicates"] = verified
    stats["fact_guarded_pairs"] = len(guarded)
    stats["fact_guarded_texts"] = len({p["other"] for p in guarded if dup_of[p["other"]] < 0})
    stats["fact_guarded_examples"] = guarded[:GUARD_EXAMPLES]
    assert len(dup_of) == n
    return Decision(dup_of, similarity, exact, exact_keys_, stats)
