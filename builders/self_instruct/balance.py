"""Category balance: the next request asks for the category with the fewest tasks so far.

MedicalGPT-zh's seed file is 用药建议 14, 病因分析 12, 病情诊断 9 …; sampling categories the way
seeds fall reproduces that skew. Choosing the least-filled category (counting tasks already
requested in this round) keeps every category near N / categories.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

DEFAULT_CATEGORIES = ("病情诊断", "病因分析", "治疗方案", "用药建议", "指标解读", "就医建议", "预防措施", "预后评估")


def merge_categories(extra: Sequence[str] = (), *, replace: bool = False) -> list[str]:
    """The default eight plus the user's, in order, without repeats (or only the user's with `replace`)."""
    cleaned = [c.strip() for c in extra if c.strip()]
    return list(dict.fromkeys(cleaned if replace and cleaned else [*DEFAULT_CATEGORIES, *cleaned]))


class CategoryBalance:
    """Accepted tasks per category; `plan` picks the categories of the next round of requests."""

    def __init__(self, categories: Sequence[str]) -> None:
        if not categories:
            raise ValueError("at least one category is needed")
        self.categories = list(categories)
        self.accepted: Counter[str] = Counter()

    def add(self, category: str) -> None:
        self.accepted[category] += 1

    def plan(self, max_requests: int, per_request: int, need: int, quota: int | None = None) -> list[tuple[str, int]]:
        """(category, tasks to ask for) of the next round: least-filled category first (ties in list
        order), counting planned tasks as filled, until `need` tasks are planned or `max_requests`.

        With a `quota` (the share of N per category) a request asks for no more than its category
        still lacks, so a small N spreads over every category instead of filling the first few."""
        expected = {c: self.accepted[c] for c in self.categories}
        out: list[tuple[str, int]] = []
        planned = 0
        while len(out) < max_requests and planned < need:
            pick = min(self.categories, key=lambda c: (expected[c], self.categories.index(c)))
            k = per_request if quota is None else min(per_request, max(1, quota - expected[pick]))
            out.append((pick, k))
            expected[pick] += k
            planned += k
        return out

    def counts(self) -> dict[str, int]:
        """Accepted tasks per category, every category listed (zeros included)."""
        return {c: self.accepted[c] for c in self.categories}
