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

    def plan(self, requests: int, per_request: int) -> list[str]:
        """Categories for `requests` requests of `per_request` tasks each: least-filled first (ties in
        list order), counting each planned request as `per_request` tasks."""
        expected = {c: self.accepted[c] for c in self.categories}
        out = []
        for _ in range(requests):
            pick = min(self.categories, key=lambda c: (expected[c], self.categories.index(c)))
            out.append(pick)
            expected[pick] += per_request
        return out

    def counts(self) -> dict[str, int]:
        """Accepted tasks per category, every category listed (zeros included)."""
        return {c: self.accepted[c] for c in self.categories}
