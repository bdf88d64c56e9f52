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
   in the order given. A text's candidates are the earlier texts among the first `bucket_depth` (16)
   texts of an LSH bucket it is in, ranked by how many of its buckets list them so (most first: a
   light-edit copy shares most bands, a templated look-alike one or two), then by order. It is compared
   with the first `max_compare` (64) *kept* candidates of that ranking, and removed when one is at or
   above the threshold and the fact guard finds no difference; it names the most similar such kept
   text (earliest on ties). Otherwise it is kept. A removed text never makes another one a duplicate,
   so there are no chains: every removal is within the threshold of the text it names. Both limits
   bound the work on crowded buckets (templated corpora put thousands of texts in one), and the
   ranking keeps them from costing recall: ranking by order alone found 49 % of bench/scale.py's
   near-copies at 250k records, this ranking all of them.

Only texts that share a bucket with another text are candidates; pairs are listed, bounded and compared in
numpy blocks (`dedup_pairs.py`), and only texts with a pair at or above the threshold are decided one by one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from medmill.builders.curation import minhash as mh
from medmill.builders.curation.dedup_pairs import (
    BoundData,
    BucketTable,
    PairFiles,
    Sketches,
    fork_imap,
    fork_map,
    sketches,
    sorted_unique,
)
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
    bucket_depth: int = 16  # the first rows of each LSH bucket a text may be compared with
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
    return exact_keys_of_units(texts, *mh.char_units(texts))


def exact_keys_of_units(texts: list[str], seq: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`exact_keys` from the texts' letters and digits (`mh.char_units`), when the caller has them."""
    import xxhash

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
SETS_MIN_CHUNK = 1_000  # fewest texts a forked worker reads and shingles at once
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


class BandColumns(Protocol):
    """LSH band keys one band at a time (`dedup_state.BandFiles`: on disk)."""

    def column(self, band: int) -> np.ndarray: ...


def decide(
    exact_keys_: np.ndarray,
    units: np.ndarray,
    band_keys: np.ndarray | BandColumns,
    config: DedupConfig,
    fetch: TextFetch,
    reference: Reference | None = None,
    sketch: Sketches | None = None,
    work_dir: Path | None = None,
) -> Decision:
    """The one dedup decision (module docstring, steps 1-4), from compact per-record state: exact keys,
    letter counts, LSH band keys ((n, bands) array, or `BandColumns` read a band at a time) and, when
    the caller has them, shingle-set sketches (else they are made from the candidates' texts). Only the
    texts of some LSH candidates are asked for, through `fetch`. The candidate pairs go to files in
    `work_dir` (default: the system's temporary dir). How it runs without a Python step per record:
    `dedup_pairs.py`."""
    params = config.params
    bands, rows = config.bands_rows
    n_ref = len(reference.texts) if reference is not None else 0
    n = len(exact_keys_)
    dup_of, exact = _exact_pass(exact_keys_, reference, n_ref)
    similarity = np.where(exact, 1.0, 0.0)

    # inputs sharing a bucket with another input or with the index; index texts sharing one with an input
    todo = np.flatnonzero(~exact & (units > 0))
    ref_keys = mh.band_keys(reference.sigs, bands, rows) if reference is not None and n_ref else np.zeros((0, bands), np.uint64)
    column = band_keys.column if not isinstance(band_keys, np.ndarray) else (lambda b: band_keys[:, b])
    table = BucketTable(ref_keys, lambda b: column(b)[todo], len(todo), bands, decision_workers(config, len(todo)))
    cand = todo  # table rows: index texts, then these inputs (only `table.new_rows` of them have pairs)
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
        "lsh_candidates": int(len(table.new_rows)),
    }
    guarded: list[dict[str, Any]] = []
    compared = verified = 0
    if len(table.new_rows):
        texts = _CandidateTexts(table, cand, fetch, reference)
        # sketches of the rows that have pairs (the others' stay empty: they are never looked at)
        if sketch is not None:
            new_sketch = sketch.take(cand)
        else:
            new_sketch = Sketches.empty(len(cand))
            _fill(new_sketch, table.new_rows, text_sketches(texts.get(table.n_ref_rows + table.new_rows), params))
        ref_sketch = Sketches.empty(table.n_ref_rows)
        _fill(ref_sketch, table.ref_touched, text_sketches(texts.get(table.ref_touched), params))
        sk = Sketches.concat([ref_sketch, new_sketch]) if len(ref_sketch.sizes) else new_sketch
        del new_sketch, ref_sketch
        with tempfile.TemporaryDirectory(prefix="dedup-pairs-", dir=work_dir) as scratch:
            resolver = _Resolver(table, sk, texts, config, Path(scratch))
            del sk  # the resolver drops it once the bound data is made
            resolved = resolver.run()
            del resolver
        removed = np.flatnonzero(resolved.dup_row >= 0)
        where = cand[removed - table.n_ref_rows]
        dup_of[where] = texts.glob(resolved.dup_row[removed])
        similarity[where] = resolved.dup_sim[removed]
        compared, verified = resolved.compared, len(removed)
        guarded = resolved.guarded
    stats["exact_comparisons"] = compared
    stats["near_duplicates"] = verified
    stats["fact_guarded_pairs"] = len(guarded)
    stats["fact_guarded_texts"] = len({p["other"] for p in guarded if dup_of[p["other"]] < 0})
    stats["fact_guarded_examples"] = guarded[:GUARD_EXAMPLES]
    assert len(dup_of) == n
    return Decision(dup_of, similarity, exact, exact_keys_, stats)


def text_sketches(texts: list[str], params: mh.MinHashParams) -> Sketches:
    return sketches(*params.shingles(texts)) if texts else Sketches.empty()


def _fill(sk: Sketches, rows: np.ndarray, part: Sketches) -> None:
    if len(rows):
        sk.sizes[rows], sk.bits[rows] = part.sizes, part.bits


class _CandidateTexts:
    """Texts of candidate rows: index texts from the reference, inputs through `fetch` (cached)."""

    def __init__(self, table: BucketTable, cand: np.ndarray, fetch: TextFetch, reference: Reference | None) -> None:
        self.table, self.cand, self.fetch, self.reference = table, cand, fetch, reference
        self.n_ref = len(reference.texts) if reference is not None else 0
        self.cache: dict[int, str] = {}

    def glob(self, rows: np.ndarray) -> np.ndarray:
        """Decision positions (index texts 0..R-1, then inputs) of candidate rows."""
        rows = np.asarray(rows, dtype=np.int64)
        r0 = self.table.n_ref_rows
        out = np.empty(len(rows), dtype=np.int64)
        is_ref = rows < r0
        out[is_ref] = self.table.ref_rows[rows[is_ref]]
        out[~is_ref] = self.n_ref + self.cand[rows[~is_ref] - r0]
        return out

    def get(self, rows: np.ndarray) -> list[str]:
        """Texts of ascending candidate rows (kept for `text`)."""
        rows = np.asarray(rows, dtype=np.int64)
        r0 = self.table.n_ref_rows
        refs, news = rows[rows < r0], rows[rows >= r0]
        out = [self.reference.texts[g] for g in self.table.ref_rows[refs].tolist()] if self.reference is not None and len(refs) else []
        if len(news):
            out += self.fetch(self.cand[news - r0]).to_pylist()
        return out

    def keep(self, rows: np.ndarray, texts: list[str]) -> None:
        self.cache.update(zip(np.asarray(rows).tolist(), texts, strict=True))

    def text(self, row: int) -> str:
        got = self.cache.get(row)
        if got is None:
            got = self.cache[row] = self.get(np.array([row]))[0]
        return got


def _chunk_sets(texts: list[str], params: mh.MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    """The shingle sets of `texts` end to end, and their sizes."""
    sets = mh.unique_sets(*params.shingles(texts))
    sizes = np.fromiter((len(x) for x in sets), dtype=np.int64, count=len(sets))
    return (np.concatenate(sets) if sets else np.zeros(0, np.uint32)), sizes


class _FlatSets:
    """Shingle sets of a list of texts, end to end (one array + bounds)."""

    def __init__(self, texts: pa.Array | None, params: mh.MinHashParams, parts: list[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        if parts is None:
            assert texts is not None
            parts = [_chunk_sets(texts.slice(start, TEXT_CHUNK).to_pylist(), params) for start in range(0, len(texts), TEXT_CHUNK)]
        flats, bounds, at = [], [np.zeros(1, np.int64)], 0
        for flat, sizes in parts:  # (sets end to end, their sizes) of consecutive chunks of texts
            flats.append(flat)
            bounds.append(at + np.cumsum(sizes))
            at += int(sizes.sum())
        self.flat = np.concatenate(flats) if flats else np.zeros(0, np.uint32)
        self.bounds = np.concatenate(bounds)

    def many(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sets of `rows` end to end, and their lengths (one gather)."""
        starts, lens = self.bounds[rows], self.bounds[rows + 1] - self.bounds[rows]
        offsets = np.cumsum(lens) - lens
        return self.flat[np.repeat(starts - offsets, lens) + np.arange(int(lens.sum()))], lens

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact Jaccard of the sets a[k], b[k] for every k (as `mh.jaccard`: shared / union, float64)."""
        out = np.empty(len(a), dtype=np.float64)
        for c in range(0, len(a), PAIR_JACCARD_CHUNK):
            x, y = a[c : c + PAIR_JACCARD_CHUNK], b[c : c + PAIR_JACCARD_CHUNK]
            fx, lx = self.many(x)
            fy, ly = self.many(y)
            ids = np.arange(len(x), dtype=np.uint64)
            kx = (np.repeat(ids, lx) << np.uint64(32)) | fx.astype(np.uint64)
            ky = (np.repeat(ids, ly) << np.uint64(32)) | fy.astype(np.uint64)
            at = np.minimum(np.searchsorted(ky, kx), max(0, len(ky) - 1))
            hit = ky[at] == kx if len(ky) else np.zeros(len(kx), bool)
            shared = np.bincount((kx[hit] >> np.uint64(32)).astype(np.int64), minlength=len(x))
            out[c : c + PAIR_JACCARD_CHUNK] = shared / (lx + ly - shared)
        return out


GUARD_CHUNK = 2_000  # text pairs per fact-guard job


def decision_workers(config: DedupConfig, size: int) -> int:
    """Processes for the decision's parallel parts: none for small inputs (forking costs more)."""
    return 1 if size < PARALLEL_MIN_DOCS else (config.workers or len(os.sched_getaffinity(0)))


def _map_blocks(table: BucketTable, bound: BoundData, depth: int, config: DedupConfig, store: PairFiles):
    """Per block of input rows, in order: P written to the block's file in `store` (the pair count
    comes back), ends, and the pairs whose bound reaches the threshold (their place in the block, row
    and mate); blocks are independent, so the result does not depend on the split."""

    def block(item: tuple[int, tuple[int, int]]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        k, (lo, hi) = item
        m, e = table.block_pairs(lo, hi, depth)
        store.write(store.block_path(k), m)
        ok = np.flatnonzero(bound.block(lo, np.diff(np.r_[0, e]), m, config.threshold))
        return len(m), e, ok, lo + np.searchsorted(e, ok, side="right"), m[ok]

    return fork_imap(block, enumerate(table.blocks(table.n_ref_rows, depth)), decision_workers(config, table.size))


def _map_guard(guard: FactGuard, pairs: list[tuple[str, str]], config: DedupConfig) -> list[str | None]:
    """`guard.difference(kept, other)` of every pair, in order."""
    chunks = [pairs[c : c + GUARD_CHUNK] for c in range(0, len(pairs), GUARD_CHUNK)]
    parts = fork_map(lambda chunk: [guard.difference(a, b) for a, b in chunk], chunks, decision_workers(config, PARALLEL_MIN_DOCS))
    return [why for part in parts for why in part]


PAIR_JACCARD_CHUNK = 20_000  # pairs compared shingle by shingle per numpy step


@dataclass
class _Resolved:
    dup_row: np.ndarray  # per candidate row: the kept row it duplicates, -1 if kept
    dup_sim: np.ndarray
    compared: int
    guarded: list[dict[str, Any]]


class _Resolver:
    """Step 4 of the rule over the candidate table. P_i (ranked) and the exact Jaccard of every pair
    that may reach the threshold come in numpy blocks; a row with no such pair in P_i is kept, whatever
    S_i is, and only the other ("open") rows are decided one by one, in order, as the rule says."""

    def __init__(self, table: BucketTable, sk: Sketches, texts: _CandidateTexts, config: DedupConfig, scratch: Path) -> None:
        self.table, self.sk, self.texts, self.config = table, sk, texts, config
        self.scratch = scratch
        self.params = config.params
        self.k = config.max_compare
        self.guard = config.guard()
        self.r0 = table.n_ref_rows

    def _pairs(self) -> None:
        """P (`mates` split by `ends`) and the pairs at or above the threshold."""
        table, depth = self.table, self.config.bucket_depth
        ends, maybe_at, maybe_row, maybe_mate = [], [], [], []
        self.mates = store = PairFiles(self.scratch)
        base = 0
        bound = BoundData(self.sk)
        self.sk = Sketches.empty()  # the bound data is all the blocks need of the sketches
        for count, e, ok, ok_rows, ok_mates in _map_blocks(table, bound, depth, self.config, store):
            maybe_at.append(base + ok)
            maybe_row.append(ok_rows)
            maybe_mate.append(ok_mates)
            store.add(count)
            ends.append(base + e)
            base += count
        self.starts = np.concatenate([[0], *ends]).astype(np.int64) if ends else np.zeros(1, np.int64)
        at = np.concatenate(maybe_at) if maybe_at else np.zeros(0, np.int64)
        a = np.concatenate(maybe_row) if maybe_row else np.zeros(0, np.int64)
        b = np.concatenate(maybe_mate).astype(np.int64) if maybe_mate else np.zeros(0, np.int64)
        need = sorted_unique(np.concatenate([a, b]))
        got, sets = self._texts_and_sets(need)
        sims = sets.jaccard(np.searchsorted(need, a), np.searchsorted(need, b))
        above = sims >= self.config.threshold
        self.above_at, self.above_sim, self.above_mate = at[above], sims[above], b[above]
        above_rows = sorted_unique(np.concatenate([a[above], b[above]]))
        self.texts.keep(above_rows, [got[i] for i in np.searchsorted(need, above_rows).tolist()])
        # the fact guard of every pair at or above the threshold, on every core (most open rows need
        # exactly the one)
        self.above_why: dict[tuple[int, int], str | None] = {}
        if self.guard is not None and len(self.above_at):
            pairs = list(zip(b[above].tolist(), a[above].tolist(), strict=True))
            texts = [(self.texts.text(j), self.texts.text(i)) for j, i in pairs]
            self.above_why = dict(zip(pairs, _map_guard(self.guard, texts, self.config), strict=True))

    def _texts_and_sets(self, rows: np.ndarray) -> tuple[list[str], _FlatSets]:
        """Texts and shingle sets of ascending candidate rows, read and shingled in chunks on forked
        workers (the spill parts a chunk's rows are in are read by one worker)."""
        workers = decision_workers(self.config, self.table.size)
        step = max(SETS_MIN_CHUNK, min(TEXT_CHUNK, -(-len(rows) // (4 * workers))))
        params, texts = self.params, self.texts

        def chunk(part: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
            got = texts.get(part)
            return got, *_chunk_sets(got, params)

        got: list[str] = []
        parts = []
        for part_texts, flat, sizes in fork_imap(chunk, [rows[c : c + step] for c in range(0, len(rows), step)], workers):
            got += part_texts
            parts.append((flat, sizes))
        return got, _FlatSets(None, params, parts)

    def run(self) -> _Resolved:
        try:
            return self._run()
        finally:
            if isinstance(getattr(self, "mates", None), PairFiles):
                self.mates.close()

    def _run(self) -> _Resolved:
        self._pairs()
        table, r0, k = self.table, self.r0, self.k
        self.kept = np.ones(table.size, dtype=bool)
        self.dup_row = np.full(table.size, -1, dtype=np.int64)
        self.dup_sim = np.zeros(table.size, dtype=np.float64)
        self.guarded: list[dict[str, Any]] = []
        is_open = np.zeros(len(self.starts) - 1, dtype=bool)
        if len(self.above_at):
            is_open[np.searchsorted(self.starts, self.above_at, side="right") - 1] = True
        open_rows = np.flatnonzero(is_open)
        # per open row: its part of P and of the pairs above the threshold
        los = self.starts[open_rows]
        firsts = np.searchsorted(self.above_at, los)
        lasts = np.searchsorted(self.above_at, self.starts[open_rows + 1])
        for row, lo, a, z in zip((open_rows + r0).tolist(), los.tolist(), firsts.tolist(), lasts.tolist(), strict=True):
            self._decide_row(row, lo, a, z)
        # S_i is the first k kept rows of P_i; its earlier rows were final when row i was decided
        kept_in_p = np.diff(self.starts) - self._removed_in_p()
        compared = int(np.minimum(kept_in_p, k).sum())
        return _Resolved(self.dup_row, self.dup_sim, compared, self.guarded)

    def _removed_in_p(self) -> np.ndarray:
        """Per input row: how many rows of P_i are removed (one block of P read back at a time)."""
        n = len(self.starts) - 1
        if self.kept.all():
            return np.zeros(n, dtype=np.int64)
        kept, starts, store = self.kept, self.starts, self.mates

        def block(k: int) -> tuple[int, np.ndarray]:
            first, last = store.bounds[k], store.bounds[k + 1]
            lo, hi = np.searchsorted(starts, [first, last], side="right") - 1  # rows with pairs in the block
            where = first + np.flatnonzero(~kept[store.block(k)])
            return int(lo), np.bincount(np.searchsorted(starts, where, side="right") - 1 - lo, minlength=int(hi - lo + 1))

        out = np.zeros(n + 1, dtype=np.int64)
        for lo, counts in fork_imap(block, range(len(store.bounds) - 1), decision_workers(self.config, len(kept))):
            out[lo : lo + len(counts)] += counts
        return out[:n]

    def _decide_row(self, row: int, lo: int, a: int, z: int) -> None:
        """Decide an open row: P_i is pairs lo.. of P, its pairs at or above the threshold a..z-1 of
        `above_*`. A pair among P_i's first k is in S_i exactly when its row is kept (the common case:
        P_i is not read back); a later one only when fewer than k kept rows precede it."""
        local = self.above_at[a:z] - lo
        mates = self.above_mate[a:z]
        if int(local.max()) < self.k:
            chosen = self.kept[mates]
        else:
            hi = int(self.starts[row - self.r0 + 1])
            kept = self.kept[self.mates[lo:hi]]
            chosen = (kept & (np.cumsum(kept) <= self.k))[local]
        above = sorted(zip((-self.above_sim[a:z][chosen]).tolist(), mates[chosen].tolist(), strict=True))
        for neg_sim, j in above:
            why = self.above_why[(j, row)] if self.guard is not None else None
            if why is None:
                self.kept[row], self.dup_row[row], self.dup_sim[row] = False, j, -neg_sim
                return
            kept_at, me = self.texts.glob(np.array([j, row])).tolist()
            self.guarded.append({"kept": kept_at, "other": me - self.texts.n_ref, "similarity": round(-neg_sim, 4), "difference": why})
