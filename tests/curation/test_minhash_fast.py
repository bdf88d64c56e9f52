"""minhash.jaccard (merge and count neighbours) equals the plain searchsorted form on shingle sets."""

from __future__ import annotations

import numpy as np

from medmill.builders.curation import minhash as mh


def plain_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) or not len(b):
        return 1.0 if len(a) == len(b) else 0.0
    pos = np.searchsorted(a, b)
    inter = int(np.count_nonzero(a[np.minimum(pos, len(a) - 1)] == b))
    return inter / (len(a) + len(b) - inter)


def test_jaccard_equals_plain_form():
    rng = np.random.default_rng(0)
    texts = ["高血压患者应低盐饮食，定期复查。", "高血压患者应低盐饮食，定期复诊。", "糖尿病", "", "？？", "a", "ab", "abc" * 30]
    sets = mh.unique_sets(*mh.MinHashParams().shingles(texts))
    for _ in range(3000):  # random sets over small and large ranges (many and few shared values)
        hi = int(rng.choice([8, 100, 1 << 32]))
        sets.append(np.unique(rng.integers(0, hi, size=int(rng.integers(0, 60)), dtype=np.uint64)).astype(np.uint32))
    sets.append(np.array([0, 2**32 - 1], dtype=np.uint32))
    for i in range(len(sets)):
        for j in (i, i + 1, (i * 31) % len(sets), len(sets) - 1 - i):
            a, b = sets[i], sets[j % len(sets)]
            assert mh.jaccard(a, b) == plain_jaccard(a, b), (a, b)


def test_jaccard_many_equals_one_pair_at_a_time():
    """dedup's decision verifies a text against all its kept candidates at once: same floats as pairwise."""
    rng = np.random.default_rng(1)
    texts = ["高血压患者应低盐饮食，定期复查。", "高血压患者应低盐饮食，定期复诊。", "糖尿病", "", "？？", "a", "abc" * 30]
    sets = mh.unique_sets(*mh.MinHashParams().shingles(texts))
    for _ in range(400):
        hi = int(rng.choice([8, 100, 1 << 32]))
        sets.append(np.unique(rng.integers(0, hi, size=int(rng.integers(0, 40)), dtype=np.uint64)).astype(np.uint32))
    assert any(len(s) == 0 for s in sets)
    for i, b in enumerate(sets):
        group = [sets[(i * 7 + k) % len(sets)] for k in range(int(rng.integers(0, 20)))]
        got = mh.jaccard_many(group, b)
        assert got.tolist() == [mh.jaccard(a, b) for a in group], i
    assert mh.jaccard_many([], sets[0]).tolist() == []
