"""Group-aware train/validation/test splits.

All records of one group (entity, paper, conversation) land in the same split, so nothing a model
was trained on leaks into its evaluation. Assignment depends only on the group keys and the seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from medmill.schemas.errors import MedmillError
from medmill.schemas.seeded import seeded_digest

T = TypeVar("T")


def split_by_group(
    items: Sequence[T],
    group_of: Callable[[T], str],
    *,
    val_size: float = 0.0,
    test_size: float = 0.0,
    seed: int = 42,
) -> dict[str, list[T]]:
    """Return {"train": [...], "validation": [...], "test": [...]} (empty splits omitted).

    Groups are ordered by a seeded hash and filled into test, then validation, until each holds
    its share of records; a split asked for gets at least one group when there are two or more.
    """
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[group_of(item)].append(item)
    names = list(groups)
    chosen = assign_groups(names, [len(groups[g]) for g in names], val_size=val_size, test_size=test_size, seed=seed)
    assignment = {names[i]: split for i, split in chosen.items()}
    result: dict[str, list[T]] = {"train": [], "validation": [], "test": []}
    for item in items:
        result[assignment.get(group_of(item), "train")].append(item)
    return {k: v for k, v in result.items() if v}


def assign_groups(
    groups: Sequence[str], sizes: Sequence[int], *, val_size: float = 0.0, test_size: float = 0.0, seed: int = 42
) -> dict[int, str]:
    """{group position: split} of every group not in train, from the groups (first-seen order) and
    their record counts alone, so a streamed build keeping only (group, size) decides as
    `split_by_group` does. Only the groups filling test and validation are visited in rank order."""
    for name, frac in (("--val-size", val_size), ("--test-size", test_size)):
        if not 0.0 <= frac < 1.0:
            raise MedmillError(f"{name} must be in [0, 1), got {frac}")
    if val_size + test_size >= 1.0:
        raise MedmillError("--val-size plus --test-size must be below 1")
    assignment: dict[int, str] = {}
    if not (val_size or test_size) or not len(groups):
        return assignment
    # the ranks' bytes sort as their hex (seeded_rank) does; a stable sort keeps first-seen order on ties
    ranks = np.frombuffer(b"".join(seeded_digest(seed, g) for g in groups), dtype="S32")
    order = np.argsort(ranks, kind="stable")
    total = int(np.sum(np.asarray(sizes, dtype=np.int64)))
    cursor = 0
    for split, target in (("test", test_size * total), ("validation", val_size * total)):
        if target <= 0:
            continue
        taken = 0
        while cursor < len(order) - 1 and (taken == 0 or taken < target):
            g = int(order[cursor])
            if taken > 0 and taken + sizes[g] > target * 1.5:
                break
            assignment[g] = split
            taken += int(sizes[g])
            cursor += 1
    return assignment
