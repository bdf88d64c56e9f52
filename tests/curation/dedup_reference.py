"""The dedup decision written plainly (one text at a time, bucket lists in a dict), as `dedup.py`'s
docstring states the rule: the reference `dedup.decide` must equal, record for record and stat for stat."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup import (
    GUARD_EXAMPLES,
    TEXT_CHUNK,
    Decision,
    DedupConfig,
    Reference,
    TextFetch,
)


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


def decide_reference(
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
        "max_compare": config.max_compare,
        "bucket_depth": config.bucket_depth,
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
        members: dict[int, list[int]] = {}  # per bucket: its rows so far, kept or removed, in visiting order
        for j in range(len(ref_cand)):
            for bid in bucket[j].tolist():
                if bid >= 0:
                    members.setdefault(bid, []).append(int(glob[j]))
        kept: set[int] = set(glob[: len(ref_cand)].tolist())
        for j in range(len(ref_cand), len(glob)):
            me = int(glob[j])
            my_buckets = [bid for bid in bucket[j].tolist() if bid >= 0]
            score: dict[int, int] = {}  # P_i: the first bucket_depth rows of each of my buckets
            for bid in my_buckets:
                for g in members.get(bid, ())[: config.bucket_depth]:
                    score[g] = score.get(g, 0) + 1
            ranked = sorted(score, key=lambda g: (-score[g], g))  # most shared buckets first, then earliest
            kept_rows = [g for g in ranked if g in kept][: config.max_compare]
            best, best_sim = -1, -1.0
            if kept_rows:
                my_set = sets[j]
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
                kept.add(me)
            for bid in my_buckets:
                members.setdefault(bid, []).append(me)
    stats["exact_comparisons"] = compared
    stats["near_duplicates"] = verified
    stats["fact_guarded_pairs"] = len(guarded)
    stats["fact_guarded_texts"] = len({p["other"] for p in guarded if dup_of[p["other"]] < 0})
    stats["fact_guarded_examples"] = guarded[:GUARD_EXAMPLES]
    assert len(dup_of) == n
    return Decision(dup_of, similarity, exact, exact_keys_, stats)
