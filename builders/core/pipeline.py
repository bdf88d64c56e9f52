"""Steps are plain functions over batches of records: list in, kept records + rejects + counters out.
An executor composes them. Steps keep no global state, so the same functions can run in-process
(LocalExecutor) or be mapped over a cluster later.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medmill.schemas import Record, RejectRow


@dataclass
class StepResult:
    records: list[Record]
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)
    # side effects that must wait until the dataset is safely written (e.g. growing a dedup index)
    on_commit: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class Step:
    """A named batch function. `fn(records) -> StepResult`."""

    name: str
    fn: Callable[[list[Record]], StepResult]


@dataclass
class PipelineResult:
    records: list[Record]
    rejects: list[RejectRow]
    counters: Counter
    stats: dict[str, dict[str, Any]]
    timings: dict[str, float]
    on_commit: list[Callable[[], None]] = field(default_factory=list)


class LocalExecutor:
    """Runs steps one after another in this process (steps may use all cores inside)."""

    def run(self, records: Sequence[Record], steps: Sequence[Step]) -> PipelineResult:
        current = list(records)
        rejects: list[RejectRow] = []
        counters: Counter = Counter()
        stats: dict[str, dict[str, Any]] = {}
        timings: dict[str, float] = {}
        on_commit: list[Callable[[], None]] = []
        for step in steps:
            t0 = time.perf_counter()
            before = len(current)
            result = step.fn(current)
            timings[step.name] = time.perf_counter() - t0
            current = result.records
            rejects.extend(result.rejects)
            on_commit.extend(result.on_commit)
            counters.update({f"{step.name}.{k}": v for k, v in result.counters.items()})
            stats[step.name] = {"in": before, "out": len(current), "dropped": before - len(current), **result.stats}
        return PipelineResult(current, rejects, counters, stats, timings, on_commit)
