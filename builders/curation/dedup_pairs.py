"""The dedup decision's candidate pairs, from compact state, in numpy blocks instead of a Python step per
record (`dedup.decide` runs the rule of `dedup.py`'s docstring with them).

Rows of the candidate table are in visiting order: index texts first, then inputs. P_i = the earlier
rows that are among the first D = `bucket_depth` rows of at least one LSH bucket row i is in, kept or
removed; its rows are ranked by how many of row i's buckets list them so (most first), then by row. The
rule compares row i with S_i = the first `max_compare` *kept* rows of that ranking.

1. `BucketTable`: per band, the buckets holding an input and another row, each bucket's rows ascending
   (one sort of packed keys, `bucket_order`, in a forked worker per band), and per row where its
   bucket starts and its rank there; `block_pairs` lists P_i, ranked, for a block of rows at once (it
   needs no kept status: S_i is P_i's kept rows, taken in its order). Blocks run on forked workers,
   each writing its part of P to a file.
2. `Sketches`: per text its shingle-set size and a 256-bit sketch (bit `h >> 24` of every shingle
   hash h). Two sets share at most popcount(a & b) + min(excess a, excess b) shingles (excess: shingles
   that share a sketch bit with another shingle of the same set), so `bound_pass` rules out, exactly,
   the pairs whose Jaccard cannot reach the threshold; only the rest are compared shingle by shingle.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmill.builders.core.forked import forked_imap

SKETCH_WORDS = 4  # 256-bit sketch per text: bound_pass rules out >99 % of bench/scale.py's LSH pairs
PAIR_BLOCK = 3_000_000  # pairs generated per block (bounds the temporaries: ~40 B each)
BLOCK_ROWS = 1 << 22  # rows per block at most (fewer with 512+ bands): row, score and mate fit one int64 sort key
BOUND_CHUNK = 1_000_000  # pairs per bound_pass step


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2's hash-based unique is ~10x slower on millions of 64-bit keys."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


@dataclass
class Sketches:
    sizes: np.ndarray  # (n,) int32: shingle-set size
    bits: np.ndarray  # (n, SKETCH_WORDS) uint64

    @classmethod
    def empty(cls, n: int = 0) -> Sketches:
        return cls(np.zeros(n, np.int32), np.zeros((n, SKETCH_WORDS), np.uint64))

    @classmethod
    def concat(cls, parts: list[Sketches]) -> Sketches:
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.sizes for p in parts]), np.concatenate([p.bits for p in parts]))

    def take(self, rows: np.ndarray) -> Sketches:
        return Sketches(self.sizes[rows], self.bits[rows])


def sketches(hashes: np.ndarray, offsets: np.ndarray) -> Sketches:
    """Sketches of the documents whose shingle hashes (32-bit, with repeats) start at `offsets`."""
    n = len(offsets)
    counts = np.diff(np.append(offsets, len(hashes))).astype(np.int64)
    doc = np.repeat(np.arange(n, dtype=np.uint64), counts)
    keyed = sorted_unique((doc << np.uint64(32)) | hashes.astype(np.uint64))  # by doc, then hash
    ds = (keyed >> np.uint64(32)).astype(np.int64)
    bit = (keyed & np.uint64(0xFFFFFFFF)) >> np.uint64(32 - 8)  # top 8 bits: one of 256
    cell = ds * SKETCH_WORDS + (bit >> np.uint64(6)).astype(np.int64)  # ascending (hashes ascend per doc)
    values = np.left_shift(np.uint64(1), bit & np.uint64(63))
    bits = np.zeros(n * SKETCH_WORDS, np.uint64)
    if len(cell):
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        bits[cell[starts]] = np.bitwise_or.reduceat(values, starts)
    return Sketches(np.bincount(ds, minlength=n).astype(np.int32), bits.reshape(n, SKETCH_WORDS))


_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """(k,) uint64 -> (k,) int32 set bits."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).astype(np.int32)
    return _POP8[x.view(np.uint8)].reshape(len(x), 8).sum(axis=1, dtype=np.int32)


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    """(k, words) uint64 -> (k,) int64 set bits per row."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    return _POP8[np.ascontiguousarray(x).view(np.uint8)].sum(axis=1, dtype=np.int64)


def bound_pass(sk: Sketches, a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """(pairs,) bool: the pair's Jaccard may reach `threshold` (False is certain: it does not). The
    float bound is at least the float Jaccard, as x / (s - x) rises with x and rounding keeps order."""
    return BoundData(sk)(a, b, threshold)


class BoundData:
    """What `bound_pass` needs of the sketches, made once for every block of pairs: sizes, excess
    and one contiguous array per sketch word (1-D gathers are faster)."""

    def __init__(self, sk: Sketches) -> None:
        self.sizes = sk.sizes.astype(np.int32)
        self.excess = self.sizes - _popcount_rows(sk.bits).astype(np.int32)
        self.words = [np.ascontiguousarray(sk.bits[:, w]) for w in range(sk.bits.shape[1])]

    def block(self, lo: int, counts: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
        """`self(a, b, threshold)` where `a` is rows lo, lo+1, ... each repeated counts[k] times (a block
        of P): their side is repeated from slices instead of gathered."""
        out = np.empty(len(b), dtype=bool)
        ends = np.cumsum(counts)
        r0 = 0
        while r0 < len(counts):  # whole rows, about BOUND_CHUNK pairs per step
            first = int(ends[r0 - 1]) if r0 else 0
            r1 = max(int(np.searchsorted(ends, first + BOUND_CHUNK, side="right")), r0 + 1)
            last = int(ends[r1 - 1])
            rep, y = counts[r0:r1], b[first:last]
            x = slice(lo + r0, lo + r1)
            shared = np.minimum(np.repeat(self.excess[x], rep), self.excess[y])
            for w in self.words:
                shared += _popcount(np.repeat(w[x], rep) & w[y])
            sx, sy = np.repeat(self.sizes[x], rep), self.sizes[y]
            shared = np.minimum(shared, np.minimum(sx, sy))
            out[first:last] = shared / (sx + sy - shared).astype(np.float64) >= threshold
            r0 = r1
        return out

    def __call__(self, a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
        out = np.empty(len(a), dtype=bool)
        sizes, excess = self.sizes, self.excess
        for c in range(0, len(a), BOUND_CHUNK):
            x, y = a[c : c + BOUND_CHUNK], b[c : c + BOUND_CHUNK]
            shared = np.minimum(excess[x], excess[y])
            for w in self.words:
                shared += _popcount(w[x] & w[y])
            sx, sy = sizes[x], sizes[y]
            shared = np.minimum(shared, np.minimum(sx, sy))
            out[c : c + BOUND_CHUNK] = shared / (sx + sy - shared).astype(np.float64) >= threshold
        return out


class PairFiles:
    """P (every input row's candidate rows, row after row) in one file per block of rows, 4 B per pair,
    written by the process that lists the block: the decision reads back only what it needs (the P_i
    of rows it decides one by one; one block at a time to count removed rows), so P - ~66 pairs per
    record of bench/scale.py's corpus - is never in memory whole."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.bounds = [0]  # first pair of each block, then the total
        self._fds: dict[int, int] = {}

    def block_path(self, k: int) -> Path:
        return self.directory / f"pairs-{k:06d}.i32"

    @staticmethod
    def write(path: Path, mates: np.ndarray) -> None:
        np.ascontiguousarray(mates, dtype=np.int32).tofile(path)

    def add(self, count: int) -> None:
        """The next block (its file written by `write`) holds `count` pairs."""
        self.bounds.append(self.bounds[-1] + count)

    def __len__(self) -> int:
        return self.bounds[-1]

    def _read(self, k: int, lo: int, hi: int) -> np.ndarray:
        fd = self._fds.get(k)
        if fd is None:
            fd = self._fds[k] = os.open(self.block_path(k), os.O_RDONLY)
        data = os.pread(fd, 4 * (hi - lo), 4 * lo)
        return np.frombuffer(data, dtype=np.int32)

    def __getitem__(self, span: slice) -> np.ndarray:
        """Pairs lo..hi-1 (a slice of P as if it were one array)."""
        lo, hi, _ = span.indices(len(self))
        parts = []
        k = bisect_right(self.bounds, lo) - 1
        while lo < hi:
            end = min(hi, self.bounds[k + 1])
            parts.append(self._read(k, lo - self.bounds[k], end - self.bounds[k]))
            lo, k = end, k + 1
        return np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0, np.int32))

    def block(self, k: int) -> np.ndarray:
        """The pairs of block k (from its file)."""
        return np.fromfile(self.block_path(k), dtype=np.int32)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def fork_map(fn, items, workers: int) -> list:
    """`[fn(x) for x in items]`, on `workers` forked processes when there are several items."""
    return list(fork_imap(fn, items, workers))


def fork_imap(fn, items, workers: int):
    """`fn(x) for x in items`, in order, on `workers` forked processes when there are several items (at
    most 2 x workers results wait in the parent). In a Ray driver it runs in the driver: forking a
    process with Ray's gRPC threads is unsafe."""
    items = list(items)
    workers = 1 if in_ray_driver() else min(workers, len(items))
    return forked_imap(fn, items, workers)


def in_ray_driver() -> bool:
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


@dataclass
class _Band:
    """One band's shared buckets: 16 B per row in one. Per row, where its bucket starts in `members`
    and how many earlier rows the bucket has, so a block of rows finds its lists without a search."""

    rows: np.ndarray  # int32 rows in a shared bucket of this band, ascending
    start: np.ndarray  # int32 per row: where its bucket starts in `members`
    rank: np.ndarray  # int32 per row: earlier rows in its bucket (its place in the bucket)
    members: np.ndarray  # int32 rows, bucket after bucket, ascending inside one


def bucket_order(col: np.ndarray) -> np.ndarray:
    """Positions of `col` (uint64 keys) ordered by key, positions ascending among equal keys - what a
    stable argsort gives, made by one sort of 64-bit words (the key's high bits above the position:
    a sort is ~4x faster than an argsort), then the rare runs where different keys share those high
    bits are ordered by (key, position)."""
    n = len(col)
    bits = max(1, (n - 1).bit_length())
    low = np.uint64((1 << bits) - 1)
    packed = (col & ~low) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & low).astype(np.int64)
    if n < 2:
        return order
    high = packed & ~low
    del packed
    keys = col[order]
    same_high = high[1:] == high[:-1]
    mixed = same_high & (keys[1:] != keys[:-1])
    if mixed.any():
        group = np.cumsum(np.r_[True, ~same_high])
        sel = np.flatnonzero(np.isin(group, group[1:][mixed]))
        order[sel] = order[sel[np.lexsort((order[sel], keys[sel]))]]
    return order


def _band_buckets(col: np.ndarray, n_ref: int) -> tuple[np.ndarray, np.ndarray, _Band]:
    """One band's keys (index texts first, then inputs) -> (inputs sharing a bucket with another input
    or an index text, index texts sharing one with an input, the buckets holding an input and another
    row). One sort of the keys (`bucket_order`: rows ascending inside each bucket)."""
    n = len(col)
    order = bucket_order(col)
    sk = col[order]
    first = np.r_[True, sk[1:] != sk[:-1]] if n else np.zeros(0, bool)
    del sk
    gid = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    size = np.diff(np.append(starts, n))
    is_ref = order < n_ref
    refs_in = np.add.reduceat(is_ref.astype(np.int64), starts) if len(starts) else np.zeros(0, np.int64)
    news_in = size - refs_in
    new_shared = order[~is_ref & ((news_in[gid] >= 2) | (refs_in[gid] >= 1))] - n_ref
    ref_touched = order[is_ref & (news_in[gid] >= 1)]
    useful = np.flatnonzero(((news_in >= 1) & (size >= 2))[gid])  # an input's list: only buckets with one
    members, gid = order[useful].astype(np.int32), gid[useful]  # bucket after bucket, rows ascending
    del order, is_ref
    first = np.r_[True, gid[1:] != gid[:-1]] if len(gid) else np.zeros(0, bool)
    del gid
    at = np.flatnonzero(first)
    start = np.repeat(at, np.diff(np.append(at, len(members)))).astype(np.int32)
    rank = np.arange(len(members), dtype=np.int32) - start
    slot = np.full(n, -1, dtype=np.int32)  # rows are unique in a band: order them by a scatter
    slot[members] = np.arange(len(members), dtype=np.int32)
    by_row = slot[slot >= 0]
    del slot
    return new_shared, ref_touched, _Band(members[by_row], start[by_row], rank[by_row], members)


class BucketTable:
    """The candidate table over rows = index texts (all, in order), then the inputs given (in order):
    per band the buckets holding an input and another row. `new_rows` are the inputs sharing a bucket
    with another input or an index text (the LSH candidates), `ref_touched` the index texts sharing one
    with an input; other rows have no bucket and so no pairs. Each band is sorted and cut into buckets
    in its own forked worker (`fork_map`)."""

    def __init__(self, ref_keys: np.ndarray, new_column, n_new: int, bands: int, workers: int = 1) -> None:
        n_ref = len(ref_keys)

        def band(b: int) -> tuple[np.ndarray, np.ndarray, _Band]:
            col = new_column(b)
            if n_ref:
                col = np.concatenate([ref_keys[:, b], col])
            return _band_buckets(col, n_ref)

        shared = np.zeros(n_new, dtype=bool)
        touched = np.zeros(n_ref, dtype=bool)
        self.bands: list[_Band] = []
        for new_shared, ref_touched, built in fork_imap(band, range(bands), workers):
            shared[new_shared] = True
            touched[ref_touched] = True
            self.bands.append(built)
        self.n_ref_rows = n_ref
        self.ref_rows = np.arange(n_ref)
        self.ref_touched = np.flatnonzero(touched)
        self.new_rows = np.flatnonzero(shared)
        self.size = n_ref + n_new
        self._costs: dict[int, np.ndarray] = {}

    def _cost(self, depth: int) -> np.ndarray:
        """(rows,) int64: pairs `block_pairs` generates for each row."""
        cost = self._costs.get(depth)
        if cost is None:
            cost = self._costs[depth] = np.zeros(self.size, dtype=np.int64)
            for band in self.bands:
                cost[band.rows] += np.minimum(band.rank, depth)  # rows are unique in a band
        return cost

    def block_pairs(self, lo: int, hi: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """For rows lo..hi-1 (at most BLOCK_ROWS): P_i end to end, each ranked (most shared buckets first,
        then ascending), and the end of each row's part. P_i: the rows among the first `depth` of any
        bucket row i is in (earlier rows: a bucket lists its rows ascending, row i at its rank)."""
        n = hi - lo
        assert n <= self.block_rows
        keys = []
        for band in self.bands:
            a, z = np.searchsorted(band.rows, [lo, hi])
            if a == z:
                continue
            rows, start = band.rows[a:z] - lo, band.start[a:z]  # a row is in at most one bucket per band
            take = np.minimum(band.rank[a:z], depth)
            total = int(take.sum())
            if not total:
                continue
            offsets = np.cumsum(take) - take
            at = np.repeat(start.astype(np.int64) - offsets, take) + np.arange(total, dtype=np.int64)
            key = np.repeat(rows.astype(np.int64) << 32, take)  # (row, mate): row in the high half
            key |= band.members[at]
            keys.append(key)
        if not keys:
            return np.zeros(0, np.int32), np.zeros(n, np.int64)
        key = np.concatenate(keys) if len(keys) > 1 else keys[0]
        del keys
        key.sort(kind="stable")  # one sorted run per band: a merging sort is ~25 % faster here
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        score = np.diff(np.append(first, len(key)))  # buckets listing the mate: at most one per band
        key = key[first]
        rows = key >> 32
        # ranked: (row, most shared first, mate), by one sort of row | bands - score | mate in 64 bits
        bands = len(self.bands)
        key = (rows << (32 + bands.bit_length())) | ((bands - score) << 32) | (key & 0xFFFFFFFF)
        key.sort()
        return key.astype(np.int32), np.cumsum(np.bincount(rows, minlength=n))  # mates: the low half

    @property
    def block_rows(self) -> int:
        """Most rows per block: `block_pairs` sorts (row << 32 + score bits) | score | mate as int64."""
        return min(BLOCK_ROWS, 1 << (31 - len(self.bands).bit_length()))

    def blocks(self, lo: int, depth: int, budget: int | None = None) -> list[tuple[int, int]]:
        """Row ranges from `lo` to the end, each generating about `budget` (PAIR_BLOCK) pairs at most."""
        budget = budget or PAIR_BLOCK
        total = np.cumsum(np.r_[0, self._cost(depth)])
        out, at = [], lo
        while at < self.size:
            end = int(np.searchsorted(total, total[at] + budget, side="right")) - 1
            end = min(self.size, max(end, at + 1), at + self.block_rows)
            out.append((at, end))
            at = end
        return out
