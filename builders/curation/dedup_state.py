"""Dedup over a stream: per-batch compact state, then one global decision that reads candidate texts
back on demand. Gives the same answer as `dedup.find_duplicates` (tests compare them) without holding
texts or record objects.

Memory, per record of the input: exact key (8 B) + letter count (4 B) + one 64-bit key per LSH band
(8 B x 17 bands at the defaults) = 148 B while the stream is read, plus 17 B per record (dup_of,
similarity, exact flag) during the decision. Only LSH candidates (records sharing a band bucket with
another one; about a quarter of the records in bench/scale.py's corpus) cost more: their compared text
(UTF-8) and shingle set (4 B per shingle) are read back from the spill, plus a bucket id per band.
Signatures (4 B x num_perm per record) are kept only when a persisted index needs them, and then on
disk (`sig_file`), not in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup import GUARD_EXAMPLES, DedupConfig, Reference, exact_keys, verify_pair

STATE_BYTES_PER_RECORD = "8 B exact key + 4 B letter count + 8 B per LSH band (148 B at 17 bands)"
TEXT_CHUNK = 50_000  # candidate texts shingled per block


@dataclass
class BatchState:
    """What dedup keeps of one batch of compared texts."""

    exact: np.ndarray  # (n,) uint64 exact keys
    units: np.ndarray  # (n,) int32 letters and digits per text (0: only exact dedup applies)
    keys: np.ndarray  # (n, bands) uint64 LSH band keys (zeros where units == 0)
    sigs: np.ndarray | None = None  # (n, num_perm) uint32, only when asked for (index)


def batch_state(texts: list[str], config: DedupConfig, with_sigs: bool = False) -> BatchState:
    """Exact keys, signatures and band keys of one batch; a text's state does not depend on the batch."""
    params = config.params
    bands, rows = config.bands_rows
    exact, units = exact_keys(texts)
    sigs = np.zeros((len(texts), params.num_perm), dtype=np.uint32)
    todo = np.flatnonzero(units > 0)
    if len(todo):
        hashes, offsets = params.shingles([texts[i] for i in todo])
        sigs[todo] = mh.signatures(hashes, offsets, params.num_perm, params.seed)
    keys = mh.band_keys(sigs, bands, rows)
    keys[units == 0] = 0
    return BatchState(exact, units.astype(np.int32), keys, sigs if with_sigs else None)


@dataclass
class DedupState:
    """Batch states appended in stream order; signatures go to `sig_file` when given."""

    config: DedupConfig
    sig_file: Path | None = None
    _parts: list[BatchState] = field(default_factory=list)
    _sig_rows: int = 0

    def add(self, state: BatchState) -> None:
        if self.sig_file is not None and state.sigs is not None:
            with open(self.sig_file, "ab") as f:
                f.write(np.ascontiguousarray(state.sigs, dtype=np.uint32).tobytes())
            self._sig_rows += len(state.sigs)
        self._parts.append(BatchState(state.exact, state.units, state.keys))

    def __len__(self) -> int:
        return sum(len(p.exact) for p in self._parts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(exact, units, keys) of every record so far; the parts are released."""
        bands, _ = self.config.bands_rows
        if not self._parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros((0, bands), np.uint64)
        exact = np.concatenate([p.exact for p in self._parts])
        units = np.concatenate([p.units for p in self._parts])
        keys = np.concatenate([p.keys for p in self._parts])
        self._parts = []
        return exact, units, keys

    def signatures(self, positions: np.ndarray) -> np.ndarray:
        """Signatures of the records at `positions`, read from `sig_file`."""
        num_perm = self.config.params.num_perm
        if self.sig_file is None or not self._sig_rows:
            return np.zeros((len(positions), num_perm), np.uint32)
        table = np.memmap(self.sig_file, dtype=np.uint32, mode="r", shape=(self._sig_rows, num_perm))
        return np.array(table[positions])


@dataclass
class Decision:
    """Per input record: `dup_of` -1 (kept) or the position of the kept one (reference positions
    0..R-1 first, then inputs R..), `similarity`, `exact`; like `dedup.DedupResult` without texts."""

    dup_of: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray
    keys: np.ndarray  # exact keys of the inputs
    stats: dict[str, Any]

    @property
    def keep(self) -> np.ndarray:
        return self.dup_of < 0


TextFetch = Callable[[np.ndarray], pa.Array]  # sorted input positions -> their compared texts


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
    exact = dup_of >= 0
    return dup_of, exact


def _shared_mask(keys: np.ndarray) -> np.ndarray:
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


def decide(
    exact_keys_: np.ndarray,
    units: np.ndarray,
    band_keys: np.ndarray,
    config: DedupConfig,
    fetch: TextFetch,
    reference: Reference | None = None,
) -> Decision:
    """The decision of `dedup.find_duplicates` from compact state: exact copies first, then LSH
    candidates in input order, each verified against earlier kept ones with `verify_pair`, the most
    similar first, and passed over when the fact guard finds a differing fact."""
    params = config.params
    bands, rows = config.bands_rows
    n_ref = len(reference.texts) if reference is not None else 0
    n = len(exact_keys_)
    dup_of, exact = _exact_pass(exact_keys_, reference, n_ref)
    similarity = np.where(exact, 1.0, 0.0)

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
        row_of = {int(g): j for j, g in enumerate(glob.tolist())}
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
                seen.update(members.get(bid, ()))
            best, best_sim = -1, -1.0
            if seen:
                text = texts[j].as_py()
                my_set = sets[j]
                above: list[tuple[float, int]] = []
                for g in sorted(seen)[: config.max_compare]:
                    k = row_of[g]
                    sim = verify_pair(texts[k].as_py(), text, config, sets[k], my_set)
                    compared += 1
                    if sim is not None:
                        above.append((-sim, g))
                for neg_sim, g in sorted(above):  # most similar first, earliest on ties (as find_duplicates)
                    why = guard.difference(texts[row_of[g]].as_py(), text) if guard is not None else None
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
