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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.fact_guard import FactGuard

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
    """The one check that turns an LSH candidate pair into a near-duplicate: the exact Jaccard of the
    two texts' shingle sets when it reaches `config.threshold`, else None. Every dedup path (in memory,
    streaming, Ray) calls this with the two texts; the sets may be passed when already computed."""
    params = config.params
    if kept_set is None:
        kept_set = mh.unique_sets(*params.shingles([kept_text]))[0]
    if text_set is None:
        text_set = mh.unique_sets(*params.shingles([text]))[0]
    sim = mh.jaccard(kept_set, text_set)
    return sim if sim >= config.threshold else None


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


def _shared_bucket_mask(keys: np.ndarray) -> np.ndarray:
    """(docs,) bool: the doc shares at least one band bucket with another doc."""
    shared = np.zeros(keys.shape[0], dtype=bool)
    for band in range(keys.shape[1]):
        _, inverse, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
        shared |= counts[inverse] > 1
    return shared


def find_duplicates(texts: list[str], config: DedupConfig, reference: Reference | None = None) -> DedupResult:
    params = config.params
    n_ref = len(reference.texts) if reference else 0
    n = len(texts)
    dup_of = np.full(n, -1, dtype=np.int64)
    similarity = np.zeros(n, dtype=np.float64)
    exact = np.zeros(n, dtype=bool)
    keys, units = exact_keys(texts)

    # 1. exact copies: of a reference text, else of an earlier input
    ref_pos: dict[int, int] = {}
    if reference is not None and n_ref:
        hit = np.isin(keys, reference.exact)
        if hit.any():
            wanted = set(keys[hit].tolist())
            for i, k in enumerate(reference.exact.tolist()):
                if k in wanted and k not in ref_pos:
                    ref_pos[k] = i
    _, first = np.unique(keys, return_index=True)
    first_of = dict(zip(keys[first].tolist(), first.tolist(), strict=True))
    for i, k in enumerate(keys.tolist()):
        if k in ref_pos:
            dup_of[i], exact[i] = ref_pos[k], True
        elif first_of[k] != i:
            dup_of[i], exact[i] = n_ref + first_of[k], True
    similarity[exact] = 1.0

    # 2. signatures and band keys of the distinct inputs (a text without letters or digits, such as
    # "？？", has nothing to compare but its exact form)
    todo = np.flatnonzero(~exact & (units > 0))
    sigs = np.zeros((n, params.num_perm), dtype=np.uint32)
    sigs[todo] = compute_signatures([texts[i] for i in todo], params, config.workers)
    bands, rows = config.bands_rows
    ref_sigs = reference.sigs if reference is not None else np.zeros((0, params.num_perm), np.uint32)
    all_keys = mh.band_keys(np.concatenate([ref_sigs, sigs[todo]]), bands, rows)
    ref_keys, new_keys = all_keys[:n_ref], all_keys[n_ref:]
    # inputs sharing a bucket with another input or with the index; index texts sharing one with an input
    new_shared = _shared_bucket_mask(new_keys)
    ref_touched = np.zeros(n_ref, dtype=bool)
    for b in range(bands) if n_ref else ():
        new_shared |= np.isin(new_keys[:, b], ref_keys[:, b])
        ref_touched |= np.isin(ref_keys[:, b], new_keys[:, b])
    cand_new = todo[new_shared]
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
        "lsh_candidates": int(len(cand_new)),
    }

    # 3. greedy pass over candidate texts in order, verifying with exact Jaccard
    if len(cand_new):
        ref_cand = np.flatnonzero(ref_touched)
        glob_keys = {int(g): all_keys[g] for g in ref_cand}  # reference rows are 0..n_ref-1
        row_of_new = {int(i): n_ref + j for j, i in enumerate(todo)}
        ref_texts = [reference.texts[g] for g in ref_cand] if reference is not None else []
        cand_texts = ref_texts + [texts[i] for i in cand_new]
        sets = mh.unique_sets(*params.shingles(cand_texts))
        set_of: dict[int, np.ndarray] = {}
        for j, g in enumerate(ref_cand):
            set_of[int(g)] = sets[j]
        for j, i in enumerate(cand_new):
            set_of[n_ref + int(i)] = sets[len(ref_cand) + j]
        buckets: dict[tuple[int, int], list[int]] = {}
        for g, k in glob_keys.items():
            for b, key in enumerate(k.tolist()):
                buckets.setdefault((b, key), []).append(g)
        text_of: dict[int, str] = {int(g): t for g, t in zip(ref_cand, ref_texts, strict=True)}
        guard = config.guard()
        guarded: list[dict[str, Any]] = []
        compared = verified = 0
        for i in cand_new.tolist():
            me = n_ref + i
            my_keys = all_keys[row_of_new[i]].tolist()
            seen: set[int] = set()
            candidates: list[int] = []
            for b, key in enumerate(my_keys):
                for g in buckets.get((b, key), ()):
                    if g not in seen:
                        seen.add(g)
                        candidates.append(g)
            best, best_sim = -1, -1.0
            above: list[tuple[float, int]] = []
            for g in sorted(candidates)[: config.max_compare]:
                kept_text = reference.texts[g] if g < n_ref and reference is not None else texts[g - n_ref]
                sim = verify_pair(kept_text, texts[i], config, set_of[g], set_of[me])
                compared += 1
                if sim is not None:
                    above.append((-sim, g))
            for neg_sim, g in sorted(above):  # most similar first, earliest on ties
                other = text_of.get(g, texts[g - n_ref] if g >= n_ref else "")
                why = guard.difference(other, texts[i]) if guard is not None else None
                if why is None:
                    best, best_sim = g, -neg_sim
                    break
                guarded.append({"kept": g, "other": i, "similarity": round(-neg_sim, 4), "difference": why})
            if best >= 0:
                dup_of[i], similarity[i] = best, best_sim
                verified += 1
            else:
                for b, key in enumerate(my_keys):
                    buckets.setdefault((b, key), []).append(me)
        stats["exact_comparisons"] = compared
        stats["near_duplicates"] = verified
        stats["fact_guarded_pairs"] = len(guarded)
        stats["fact_guarded_texts"] = len({p["other"] for p in guarded if dup_of[p["other"]] < 0})
        stats["fact_guarded_examples"] = guarded[:GUARD_EXAMPLES]
    else:
        stats.update(exact_comparisons=0, near_duplicates=0, fact_guarded_pairs=0, fact_guarded_texts=0, fact_guarded_examples=[])
    return DedupResult(dup_of, similarity, exact, sigs, keys, stats)
