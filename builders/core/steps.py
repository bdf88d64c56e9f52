"""Steps and the executor that composes them.

A step is a picklable object: a batch of records (or, for a builder's generation steps, source
items) in, a `StepResult` out (kept records, rejects, counters). Two kinds:

- `MapStep`: the result for a batch depends on that batch only (validate, quality, PII, safety,
  per-item record generation), so an executor may cut the input into batches and run them anywhere;
  its manifest stats come from its counters summed over batches (`summary`).
- `GlobalStep`: needs every record at once (dedup, decontamination, splits, generation that looks
  across the whole input or calls the LLM engine) and returns its own stats; it runs in the driver.

Steps hold settings, not open resources: heavy state (a lexicon automaton, an eval index) is built on
first use and dropped when pickled, so a Ray Data executor can ship the same steps to workers
(`map_batches` for map steps). `LocalExecutor` runs them in this process, map steps batch by batch,
and streams every step's rejects into a `RejectSink` as soon as the batch is done.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from medmill.builders.core.collect import RejectSink
from medmill.builders.core.progress import Progress
from medmill.schemas import RejectRow


@dataclass
class StepResult:
    records: list[Any]
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)
    # side effects that must wait until the dataset is safely written (e.g. growing a dedup index)
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    # extra files for the dataset dir (name -> text), e.g. clusters.jsonl
    files: dict[str, str] = field(default_factory=dict)
    # record id -> split, when the step decides splits
    splits: dict[str, str] | None = None


class Step:
    """Base of all steps: `name` (manifest key) and `__call__(batch) -> StepResult`."""

    name: str = "step"

    def __call__(self, batch: list[Any]) -> StepResult:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        # cached heavy state (names starting with "_") is rebuilt on first use after unpickling
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class MapStep(Step):
    """A step whose result for a batch depends only on that batch.

    Counters whose names start with "_" are private to the step: summed over batches and handed to
    `summary`, never made the build's counters (an LLM step's usage travels this way)."""

    # the most items an executor hands one worker at a time (None: the executor's own slice size);
    # an LLM step asks for small slices so that every worker gets some
    slice_items: int | None = None
    # the most workers that may run the step at once (None: all); an LLM step says its concurrency
    max_workers: int | None = None

    def for_workers(self, workers: int, remote: bool) -> MapStep:
        """The step as each of `workers` workers running at once runs it (`remote`: on a Ray cluster,
        whose workers may not see this machine's disk). An LLM step returns a copy with its share of
        the concurrency and rate limits; the default is the step itself."""
        return self

    def summary(self, counters: Counter) -> dict[str, Any]:
        """Manifest stats of the step from its counters summed over every batch."""
        return {}


class GlobalStep(Step):
    """A step that needs every record at once."""


@dataclass
class RunResult:
    records: list[Any]
    counters: Counter
    stats: dict[str, dict[str, Any]]
    timings: dict[str, float]
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] | None = None
    # one bar per map stage, over the items that stage takes in (a generation's stages differ in count)
    progress: Progress | None = None
    # while a map stage runs: n more of its items done, batch by batch
    advance: Callable[[int], None] = field(default=lambda n: None)

    @contextmanager
    def stage_bar(self, steps: Sequence[Step]) -> Iterator[None]:
        """`advance` feeds a bar named after `steps` whose total is the items entering them."""
        if self.progress is None:
            yield
            return
        with self.progress(" + ".join(s.name for s in steps), len(self.records)) as bar:
            self.advance = lambda n: bar(n, "")
            try:
                yield
            finally:
                self.advance = lambda n: None


class LocalExecutor:
    """Runs steps in this process: consecutive map steps batch by batch (`batch_size` items at a
    time), global steps over everything; steps may use all cores inside."""

    def __init__(self, batch_size: int = 50_000) -> None:
        self.batch_size = batch_size

    def run(self, items: Iterable[Any], steps: Sequence[Step], rejects: RejectSink,
            progress: Progress | None = None) -> RunResult:
        """Run `steps` over `items` (source items when the first steps generate records); with
        `progress`, each map stage shows a bar over the items it takes in."""
        run = RunResult(list(items), Counter(), {}, {}, progress=progress)
        i = 0
        while i < len(steps):
            if isinstance(steps[i], MapStep):
                j = i
                while j < len(steps) and isinstance(steps[j], MapStep):
                    j += 1
                with run.stage_bar(steps[i:j]):
                    self._map_stage(list(steps[i:j]), run, rejects)  # type: ignore[arg-type]
                i = j
            else:
                self._global(steps[i], run, rejects)
                i += 1
        return run

    def _map_stage(self, steps: list[MapStep], run: RunResult, rejects: RejectSink) -> None:
        counters: dict[str, Counter] = {s.name: Counter() for s in steps}
        sizes = {s.name: [0, 0] for s in steps}
        timings = dict.fromkeys(counters, 0.0)
        kept: list[Any] = []
        for start in range(0, len(run.records), self.batch_size):
            batch = run.records[start : start + self.batch_size]
            for step in steps:
                t0 = time.perf_counter()
                sizes[step.name][0] += len(batch)
                result = step(batch)
                timings[step.name] += time.perf_counter() - t0
                rejects.extend(result.rejects)
                counters[step.name].update(result.counters)
                run.on_commit.extend(result.on_commit)
                batch = result.records
                sizes[step.name][1] += len(batch)
            kept.extend(batch)
            run.advance(min(self.batch_size, len(run.records) - start))
        run.records = kept
        self._record_stage(steps, run, counters, sizes, timings)

    @staticmethod
    def _record_stage(steps: list[MapStep], run: RunResult, counters: dict[str, Counter],
                      sizes: dict[str, list[int]], timings: dict[str, float]) -> None:
        """What a map stage did, per step, into the run: timings, prefixed counters, in/out stats."""
        for step in steps:
            n_in, n_out = sizes[step.name]
            run.timings[step.name] = timings[step.name]
            run.counters.update({f"{step.name}.{k}": v for k, v in counters[step.name].items() if not k.startswith("_")})
            run.stats[step.name] = {"in": n_in, "out": n_out, "dropped": n_in - n_out, **step.summary(counters[step.name])}

    def _global(self, step: Step, run: RunResult, rejects: RejectSink) -> None:
        t0 = time.perf_counter()
        before = len(run.records)
        result = step(run.records)
        run.timings[step.name] = time.perf_counter() - t0
        rejects.extend(result.rejects)
        run.records = result.records
        run.on_commit.extend(result.on_commit)
        run.files.update(result.files)
        if result.splits is not None:
            run.splits = result.splits
        run.counters.update({f"{step.name}.{k}": v for k, v in result.counters.items()})
        run.stats[step.name] = {"in": before, "out": len(run.records), "dropped": before - len(run.records), **result.stats}
