"""Executors for `run_build` (the skeleton's `LocalExecutor` contract: `run(items, steps, sink)`), with
the map steps spread over workers: `ProcessExecutor` (`--workers N` on one machine) and `RayExecutor`
(`--executor ray`: Ray Data `map_batches`). Global steps run in the driver, as locally.

The dataset dir is the one `LocalExecutor` writes: each chunk of `batch_size` records is cut into
`sub_batch` slices that run in parallel, and the results are put back per chunk, step by step, so
rejects stream into the sink in the same order and counters add up to the same numbers.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from medmill.builders.core.collect import RejectSink
from medmill.builders.core.steps import LocalExecutor, MapStep, RunResult
from medmill.schemas import RejectRow

SUB_BATCH = 5_000
DEFAULT_BATCH_ITEMS = 2_000  # items per batch of a streamed build


def stream_batch_items(batch_items: int = DEFAULT_BATCH_ITEMS) -> int:
    """The largest batch size up to `batch_items` that divides the in-memory executor's chunk: a batch
    of a streamed build never straddles two chunks, so generation rejects keep their chunk order."""
    chunk = LocalExecutor().batch_size
    return next(n for n in range(max(1, min(batch_items, chunk)), 0, -1) if chunk % n == 0)


@dataclass
class _StepOut:
    n_in: int
    n_out: int
    seconds: float
    rejects: list[RejectRow]
    counters: Counter
    on_commit: list = field(default_factory=list)


def run_map_steps(steps: list[MapStep], batch: list[Any]) -> tuple[list[Any], list[_StepOut]]:
    """One slice through consecutive map steps: its survivors and what each step did."""
    outs = []
    for step in steps:
        t0 = time.perf_counter()
        result = step(batch)
        outs.append(_StepOut(len(batch), len(result.records), time.perf_counter() - t0, result.rejects,
                             Counter(result.counters), result.on_commit))
        batch = result.records
    return batch, outs


def _run_pickled(blob: bytes) -> bytes:
    steps, batch = pickle.loads(blob)
    return pickle.dumps(run_map_steps(steps, batch), protocol=5)


class _ParallelMapExecutor(LocalExecutor):
    """LocalExecutor whose map stages run slices elsewhere (`_map_slices`), in order."""

    remote = False  # True: workers may run on other machines (they do not see this one's disk)

    def __init__(self, workers: int, batch_size: int = 50_000, sub_batch: int = SUB_BATCH) -> None:
        super().__init__(batch_size)
        self.workers = max(1, workers)
        self.sub_batch = sub_batch

    def _map_slices(self, steps: list[MapStep], slices: list[list[Any]]) -> Iterator[tuple[list[Any], list[_StepOut]]]:
        raise NotImplementedError

    def _map_stage(self, steps: list[MapStep], run: RunResult, rejects: RejectSink) -> None:  # type: ignore[override]
        counters: dict[str, Counter] = {s.name: Counter() for s in steps}
        sizes = {s.name: [0, 0] for s in steps}
        timings = dict.fromkeys(counters, 0.0)
        chunks = [run.records[i : i + self.batch_size] for i in range(0, len(run.records), self.batch_size)]
        sub = min([self.sub_batch, *(s.slice_items for s in steps if s.slice_items)])
        slices = [(c, chunk[j : j + sub]) for c, chunk in enumerate(chunks) for j in range(0, len(chunk), sub)]
        steps, runner = self._for_workers(steps, len(slices))
        kept: list[Any] = []
        done: list[tuple[list[Any], list[_StepOut]]] = []
        current = 0
        results = runner._map_slices(steps, [s for _, s in slices]) if slices else iter(())
        for (chunk, _), result in zip(slices, results, strict=True):
            if chunk != current:
                kept += self._put_back(steps, done, rejects, counters, sizes, timings, run)
                done, current = [], chunk
            done.append(result)
        kept += self._put_back(steps, done, rejects, counters, sizes, timings, run)
        run.records = kept
        self._record_stage(steps, run, counters, sizes, timings)

    def _for_workers(self, steps: list[MapStep], n_slices: int) -> tuple[list[MapStep], _ParallelMapExecutor]:
        """Engine-per-worker hook: the stage runs on as many workers as it has slices, and no more than
        any step allows (an LLM step: its concurrency); each step learns how many run at once."""
        width = max(1, min([self.workers, n_slices, *(s.max_workers for s in steps if s.max_workers)]))
        steps = [s.for_workers(width, self.remote) for s in steps]
        if width == self.workers:
            return steps, self
        runner = copy.copy(self)
        runner.workers = width
        return steps, runner

    @staticmethod
    def _put_back(steps, done, rejects, counters, sizes, timings, run) -> list[Any]:
        """One chunk's slices: rejects step by step (as LocalExecutor writes a chunk), survivors in order."""
        for k, step in enumerate(steps):
            for _, outs in done:
                o = outs[k]
                rejects.extend(o.rejects)
                counters[step.name].update(o.counters)
                run.on_commit.extend(o.on_commit)
                sizes[step.name][0] += o.n_in
                sizes[step.name][1] += o.n_out
                timings[step.name] += o.seconds
        if done:
            run.advance(sum(outs[0].n_in for _, outs in done if outs))
        return [r for records, _ in done for r in records]


class ProcessExecutor(_ParallelMapExecutor):
    """Map steps over `workers` local processes (steps are pickled, so they may hold no open resources)."""

    def _map_slices(self, steps, slices):
        if self.workers <= 1:
            for s in slices:
                yield run_map_steps(steps, s)
            return
        with ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork")) as pool:
            pending = []
            for s in slices:
                pending.append(pool.submit(_run_pickled, pickle.dumps((steps, s), protocol=5)))
                if len(pending) >= 2 * self.workers:
                    yield pickle.loads(pending.pop(0).result())
            for f in pending:
                yield pickle.loads(f.result())


class RayExecutor(_ParallelMapExecutor):
    """Map steps as a Ray Data `map_batches` over slices (order kept), on the cluster `connect` joined.
    A builder that offers a stream builds streamed (`map_jobs`: its batches as Ray tasks, window by
    window), as with the local `StreamExecutor`; any other builds in memory with its map steps on Ray."""

    remote = True

    def __init__(self, workers: int = 0, address: str = "", batch_size: int = 50_000, sub_batch: int = SUB_BATCH,
                 batch_items: int = DEFAULT_BATCH_ITEMS) -> None:
        from medmill.builders.streaming.ray_executor import connect

        connect(address, workers)
        import ray

        super().__init__(workers or int(ray.cluster_resources().get("CPU", 1)), batch_size, sub_batch)
        self.batch_items = stream_batch_items(batch_items)

    def map_jobs(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        """A streamed build's batches (`fn` of each), in order, as Ray tasks."""
        from medmill.builders.streaming.ray_executor import ray_ordered_map

        return ray_ordered_map(fn, jobs, self.workers)

    def _map_slices(self, steps, slices: Sequence[list[Any]]):
        from medmill.builders.streaming.ray_executor import ray_ordered_map

        # the slices are in memory already: one window, one Ray Data pipeline
        return ray_ordered_map(partial(run_map_steps, steps), slices, self.workers, window=len(slices))


def build_executor(executor: str, workers: int, address: str = "") -> LocalExecutor | None:
    """The executor a build command asked for (None: run_build's default, one process)."""
    if executor == "ray":
        return RayExecutor(workers, address)
    if executor == "local" and workers != 1:
        import os

        return ProcessExecutor(workers or len(os.sched_getaffinity(0)))
    return None
