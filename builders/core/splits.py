"""Group-aware train/validation/test splits.

All records of one group (entity, paper, conversation) land in the same split, so nothing a model
was trained on leaks into its evaluation. Assignment depends only on the group keys and the seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from medmill.schemas.errors import MedmillError
from medmill.schemas.seeded import seeded_rank

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
    for name, frac in (("--val-size", val_size), ("--test-size", test_size)):
        if not 0.0 <= frac < 1.0:
            raise MedmillError(f"{name} must be in [0, 1), got {frac}")
    if val_size + test_size >= 1.0:
        raise MedmillError("--val-size plus --test-size must be below 1")
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[group_of(item)].append(item)
    order = sorted(groups, key=lambda g: seeded_rank(seed, g))
    total = len(items)
    targets = [("test", test_size * total), ("validation", val_size * total)]
    assignment: dict[str, str] = {}
    cursor = 0
    for split, target in targets:
        if target <= 0:
            continue
        taken = 0
        while cursor < len(order) - 1 and (taken == 0 or taken < target):
            g = order[cursor]
            if taken > 0 and taken + len(groups[g]) > target * 1.5:
                break
            assignment[g] = split
            taken += len(groups[g])
            cursor += 1
    result: dict[str, list[T]] = {"train": [], "validation": [], "test": []}
    for item in items:
        result[assignment.get(group_of(item), "train")].append(item)
    return {k: v for k, v in result.items() if v}
