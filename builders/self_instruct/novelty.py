"""Chinese-aware novelty: character n-gram MinHash for candidates, exact Jaccard to decide.

ROUGE-L on unsegmented Chinese (what BELLE / MedicalGPT-zh scripts use) scores identical texts 0, so
their novelty filter keeps duplicates. Character n-grams need no segmentation: LSH over MinHash
signatures finds the few earlier texts that could be close, the exact Jaccard of their n-gram sets
decides. The index holds the seeds and every accepted task; it grows as tasks are accepted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache

import numpy as np

from medmill.builders.curation.minhash import (
    band_keys,
    char_units,
    jaccard,
    lsh_params,
    ngram_hashes,
    signatures,
    unique_sets,
)


@cache
def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    return lsh_params(threshold, num_perm)


@dataclass(frozen=True)
class Nearest:
    """The most similar indexed text (exact Jaccard of n-gram sets), or similarity 0 and label None."""

    similarity: float
    label: str | None


class NoveltyIndex:
    """Texts seen so far; `nearest(text)` says how close a new text comes to any of them."""

    def __init__(self, threshold: float = 0.6, ngram: int = 3, num_perm: int = 128, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"novelty threshold must be in (0, 1], got {threshold}")
        self.threshold, self.ngram, self.num_perm, self.seed = threshold, ngram, num_perm, seed
        # candidates are found a little below the threshold so the exact check, not LSH luck, decides
        self.bands, self.rows = _bands(max(0.05, threshold - 0.1), num_perm)
        self._buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._sets: list[np.ndarray] = []
        self._labels: list[str] = []

    def __len__(self) -> int:
        return len(self._labels)

    def _prepare(self, texts: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        seq, lengths = char_units(texts)
        hashes, offsets = ngram_hashes(seq, lengths, self.ngram)
        sigs = signatures(hashes, offsets, self.num_perm, self.seed)
        return unique_sets(hashes, offsets), band_keys(sigs, self.bands, self.rows)

    def add_many(self, texts: list[str], labels: list[str]) -> None:
        if not texts:
            return
        sets, keys = self._prepare(texts)
        for text_set, row, label in zip(sets, keys, labels, strict=True):
            i = len(self._labels)
            self._sets.append(text_set)
            self._labels.append(label)
            for band, key in enumerate(row.tolist()):
                self._buckets[(band, key)].append(i)

    def add(self, text: str, label: str) -> None:
        self.add_many([text], [label])

    def nearest(self, text: str) -> Nearest:
        sets, keys = self._prepare([text])
        candidates: set[int] = set()
        for band, key in enumerate(keys[0].tolist()):
            candidates.update(self._buckets.get((band, key), ()))
        best = Nearest(0.0, None)
        for i in sorted(candidates):
            sim = jaccard(sets[0], self._sets[i])
            if sim > best.similarity:
                best = Nearest(sim, self._labels[i])
        return best

    def is_novel(self, text: str) -> tuple[bool, Nearest]:
        near = self.nearest(text)
        return near.similarity < self.threshold, near
