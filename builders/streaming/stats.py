"""Adding up what the map steps report batch by batch into what one whole-input run reports.

Counts add up; a few figures describe the step's setup and are the same in every batch (they are
kept once); texts, lists and flags are kept once. Keys keep the order a whole-input run gives them:
fixed keys where the step puts them, counter keys sorted among themselves.
"""

from __future__ import annotations

from typing import Any

# numbers that describe the step's setup, not what it saw (decontamination: eval-set size, n-gram length)
SETUP_FIGURES = frozenset({"eval_texts", "ngram"})


def _merged_order(ours: list[str], theirs: list[str]) -> list[str]:
    """Keys of both, keeping each side's order: a key only the other side has goes after its
    predecessor there, past keys it sorts after that the other side does not have."""
    out = list(ours)
    present, theirs_set = set(out), set(theirs)
    prev = None
    for k in theirs:
        if k not in present:
            pos = out.index(prev) + 1 if prev is not None else 0
            while pos < len(out) and out[pos] not in theirs_set and out[pos] < k:
                pos += 1
            out.insert(pos, k)
            present.add(k)
        prev = k
    return out


def _is_count(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in _merged_order(list(a), list(b)):
        if k not in a:
            out[k] = b[k]
        elif k not in b:
            out[k] = a[k]
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out[k] = merge_stats(a[k], b[k])
        elif _is_count(a[k]) and _is_count(b[k]) and k not in SETUP_FIGURES:
            out[k] = a[k] + b[k]
        else:
            out[k] = a[k]
    return out
