"""Character n-grams and the similarities built on them, for Chinese without word segmentation
(ROUGE from rouge_score tokenises on ASCII and scores identical Chinese strings 0).

- `char_bigrams`: bigrams of the normalised text (NFKC, lower case, no whitespace); punctuation is
  dropped unless `keep_punct`.
- `containment(part, whole)`: the share of `part`'s bigrams found in `whole` (grounding).
- `jaccard(a, b)`: bigram-set Jaccard; `near_duplicates` finds pairs at or above a threshold with
  MinHash LSH, confirmed by exact Jaccard.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from medmill.builders.text.normalise import normalise

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_SPACE = re.compile(r"\s+")


def char_bigrams(text: str, *, keep_punct: bool = False, raw: bool = False) -> set[str]:
    """Character bigrams of `text`; a one-character text is its own gram, an empty one has none.

    `raw` compares the text as written (whitespace removed only, no NFKC or case folding, and a
    one-character text has no bigram): the form the KG scenario checks were tuned on."""
    if raw:
        s = _SPACE.sub("", text)
        return {s[i : i + 2] for i in range(len(s) - 1)}
    s = normalise(text)
    if not keep_punct:
        s = _PUNCT.sub("", s)
    return {s[i : i + 2] for i in range(len(s) - 1)} if len(s) > 1 else ({s} if s else set())


def containment(part: str, whole: str) -> float:
    """Share of `part`'s character bigrams (punctuation dropped) that occur in `whole`."""
    a = char_bigrams(part)
    if not a:
        return 0.0
    return len(a & char_bigrams(whole)) / len(a)


def jaccard(a: str, b: str) -> float:
    x, y = char_bigrams(a), char_bigrams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def near_duplicates(texts: Sequence[str], threshold: float, num_perm: int = 128) -> dict[int, int]:
    """index -> index of the earlier text it near-duplicates (bigram Jaccard >= threshold)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=max(0.05, min(threshold, 0.99)), num_perm=num_perm)
    dupes: dict[int, int] = {}
    for i, text in enumerate(texts):
        grams = char_bigrams(text)
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch([g.encode("utf-8") for g in sorted(grams)])
        candidates = sorted(int(k) for k in lsh.query(mh))
        match = next((j for j in candidates if jaccard(texts[j], text) >= threshold), None)
        if match is not None:
            dupes[i] = match
            continue
        lsh.insert(str(i), mh)
    return dupes
