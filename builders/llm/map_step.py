"""`LLMMapStep`: item-wise LLM generation as a map step, so `--workers N` and `--executor ray` spread
it over workers like any curation step.

The step carries settings, never an engine or a key: each worker opens its own `LLMEngine` on the
batch it is given (the API key is read there from the environment variable `settings.api_key_env`
names, as in a one-process run; set it wherever the workers run). With W workers running the step
at once, each engine takes its share of the limits (`engine.worker_limits`: floor(concurrency / W)
but at least 1, rpm / W and tpm / W exactly), and the executors run at most `concurrency` workers on
the step, so the totals never pass the settings. Every worker writes into the build's one request
cache (see `cache.py`: the sqlite file on one machine, a `CacheServer` actor on Ray), so a resumed
run, whatever its worker count, pays nothing twice.

What the engines did comes back as counters named `_llm.*`, private to the step (summed over
batches by the executor, never in the build's counters); in the driver, `summary` turns their sums
into the manifest's `usage` and `llm` entries on the build's `Collector`, so the figures add up
across workers and equal a one-worker run's (apart from `wall_time_s`, the engines' summed time).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medmill.builders.core.collect import Collector
from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.llm import structured
from medmill.builders.llm.engine import LLMEngine, cache_path, describe_llm, structured_modes
from medmill.builders.llm.types import LLMSettings, Runner

# work(batch, engine, out): the item-wise generation of one batch; must pickle (a module-level
# function, or a picklable object holding the builder's config)
Work = Callable[[list[Any], Runner, Collector], None]

PRIVATE = "_llm."
_SUMMED = ("requests", "calls_sent", "cache_hits", "prompt_tokens", "completion_tokens", "retries", "reasks")


class LLMMapStep(MapStep):
    """`work` over each batch with a worker's own engine; see the module docstring."""

    def __init__(self, name: str, work: Work, settings: LLMSettings, out_dir: Path, *,
                 out: Collector | None = None, label: str | None = None, prompts: Sequence[dict[str, str]] = (),
                 optional: bool = False, workers: int = 1, cache_server: Any = None) -> None:
        """`optional`: the model and `prompts` are noted only when a request was made (a step that may
        have nothing to ask); otherwise they are noted now, and the model when the stage is done."""
        self.name = name
        self.optional = optional
        self.prompts = list(prompts)
        self.work = work
        self.settings = settings
        # absolute: a Ray worker or the cache actor runs in a directory of its own
        self.cache_path = cache_path(settings, out_dir).absolute()
        self.label = label
        self.workers = workers
        self.cache_server = cache_server
        self.driver_pid = os.getpid()  # where the step was made: a worker process must not outlive it
        # slices of twice the whole concurrency: a worker with its share runs a slice in 2W rounds, so
        # the slices of a stage spread evenly over the workers while each engine stays busy
        self.slice_items = 2 * max(1, settings.concurrency)
        # a local model is loaded by each worker: one at a time
        self.max_workers = 1 if settings.backend == "transformers" else max(1, settings.concurrency)
        self._out = out  # the driver's Collector (never pickled: names with "_" stay behind)
        if out is not None and not optional:
            for ref in prompts:
                out.prompt(ref)

    def for_workers(self, workers: int, remote: bool) -> LLMMapStep:
        """The step as each of `workers` workers runs it: its share of the limits, and on Ray (`remote`)
        the driver's cache served by an actor, since a worker may not see the driver's disk."""
        server = None
        if self.settings.backend == "openai" and not remote:
            import openai  # noqa: F401  (once here, not once per forked worker: ~1 s each on a busy machine)
        if remote:
            from medmill.builders.llm.cache import start_cache_server

            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            server = start_cache_server(self.cache_path)
        step = LLMMapStep(self.name, self.work, self.settings, self.cache_path.parent, label=self.label,
                          prompts=self.prompts, optional=self.optional, workers=workers, cache_server=server)
        step.cache_path = self.cache_path
        step.driver_pid = self.driver_pid
        step._out = self._out
        return step

    def __call__(self, batch: list[Any]) -> StepResult:
        out = Collector()
        try:
            if not batch:
                return StepResult([])
            _die_with(self.driver_pid)
            engine = _OnFirstCall(self)
            try:
                self.work(batch, engine, out)
            finally:
                engine.close()
            counters = Counter(out.counters)
            if engine.opened is not None:
                counters.update(usage_counters(engine.opened.usage, engine.opened.structured_mode))
            return StepResult(out.records, list(out.rejects), counters)
        finally:
            out.rejects.close()

    def open_engine(self) -> LLMEngine:
        """This worker's engine: its share of the limits, the build's cache (through the actor on Ray)."""
        cache = None
        if self.cache_server is not None:
            from medmill.builders.llm.cache import RemoteCache

            cache = RemoteCache(self.cache_server)
        return LLMEngine(self.settings, self.cache_path.parent, cache=cache, share=self.workers)

    def summary(self, counters: Counter) -> dict[str, Any]:
        """In the driver, once the stage is done: the engines' summed usage and the settings into the
        build's `usage` / `llm` entries (under `label` when the build uses several models)."""
        if self._out is not None and self.optional:
            if not counters.get(f"{PRIVATE}requests"):
                return {}
            for ref in self.prompts:
                self._out.prompt(ref)
        if self._out is not None:
            usage = usage_from_counters(counters)
            default = structured_modes(self.settings, _backend_modes(self.settings))[0]
            described = describe_llm(self.settings, used_mode(counters, default))
            if self.label is None:
                self._out.llm.update(described)
                add_usage(self._out.usage, usage)
            else:
                self._out.llm[self.label] = described
                add_usage(self._out.usage.setdefault(self.label, {}), usage)
        return {}


class _OnFirstCall:
    """The `Runner` a batch's work gets: the engine opens on the first call that has requests, so a
    batch that needs no call (every item rejected before asking) opens no client and no cache."""

    def __init__(self, step: LLMMapStep) -> None:
        self.step = step
        self.opened: LLMEngine | None = None

    def run(self, requests: list[Any], desc: str = "") -> list[Any]:
        if not requests:
            return []
        if self.opened is None:
            self.opened = self.step.open_engine()
        return self.opened.run(requests, desc)

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


def _die_with(driver_pid: int) -> None:
    """In a worker process forked by the driver (`--workers N`): die when the driver dies (kill -9
    included), so no orphan goes on paying for calls a resumed run will make again. Linux only; Ray
    ends a dead driver's workers itself."""
    if os.getpid() == driver_pid or os.getppid() != driver_pid or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != driver_pid:  # the driver died before the line above
        os._exit(1)


def _backend_modes(settings: LLMSettings) -> tuple[str, ...]:
    if settings.backend == "openai":
        from medmill.builders.llm.openai_backend import OpenAIBackend

        return OpenAIBackend.modes
    from medmill.builders.llm.transformers_backend import TransformersBackend

    return TransformersBackend.modes


def usage_counters(usage: dict[str, Any], mode: str) -> Counter:
    """One engine's `usage` (and the response format it ended with) as private counters that sum."""
    c: Counter = Counter({f"{PRIVATE}{k}": usage[k] for k in _SUMMED})
    c.update({f"{PRIVATE}errors.{k}": n for k, n in usage["errors"].items()})
    c.update({f"{PRIVATE}failed.{k}": n for k, n in usage["failed_requests"].items()})
    c[f"{PRIVATE}wall_ms"] += round(usage["wall_time_s"] * 1000)
    c[f"{PRIVATE}mode.{mode}"] += 1
    return c


def usage_from_counters(counters: Counter) -> dict[str, Any]:
    """The manifest's usage from the summed private counters (the keys of `LLMEngine.usage`)."""
    def part(prefix: str) -> dict[str, int]:
        return dict(sorted((k[len(prefix):], n) for k, n in counters.items() if k.startswith(prefix)))

    usage: dict[str, Any] = {k: counters.get(f"{PRIVATE}{k}", 0) for k in _SUMMED}
    usage["errors"] = part(f"{PRIVATE}errors.")
    usage["failed_requests"] = part(f"{PRIVATE}failed.")
    usage["wall_time_s"] = round(counters.get(f"{PRIVATE}wall_ms", 0) / 1000, 3)
    return usage


def used_mode(counters: Counter, default: str) -> str:
    """The response format the engines ended with: the most stepped-down one any engine needed."""
    used = [m for m in structured.MODES if counters.get(f"{PRIVATE}mode.{m}")]
    return used[-1] if used else default


def add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Add one step's usage into a build's (several steps may share one model's entry)."""
    for key, value in usage.items():
        if isinstance(value, dict):
            merged = Counter(total.get(key, {}))
            merged.update(value)
            total[key] = dict(sorted(merged.items()))
        elif key == "wall_time_s":
            total[key] = round(total.get(key, 0.0) + value, 3)
        else:
            total[key] = total.get(key, 0) + value
