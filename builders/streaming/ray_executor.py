"""`--executor ray`: the streamed run with its batch work on a Ray cluster, as a Ray Data pipeline.

    read plan (one item per input slice) ──map_batches(BatchWork: read rows, map steps, MinHash
    signatures + band keys)──> ordered results ──> driver: spill, rejects, dedup decision, writer

- The map steps, the signature work and the read itself run in Ray tasks (`map_batches`, one slice of
  `batch_rows` records per call, `workers` at a time); workers read their slice straight from the input
  path, so a shared or object-store path (s3://, gs://, hdfs:// through pyarrow) never passes through
  the driver.
- Results come back in input order (Ray Data `preserve_order`), so first-seen dedup and the writer give
  the same dataset dir as the local executor; the driver holds only the compact state the local one holds.
- Outputs are written by the driver (`--out` may be a pyarrow filesystem URI: see `outputs.py`).
- The global dedup step runs in a fresh process on the driver's machine (`dedup_child.py`): a Ray driver
  must not fork, that process may, so the decision uses the driver machine's cores as locally.

Streamed builds on Ray (`ray_ordered_map`): the reader runs in the driver and its batches go to the
workers window by window, so the driver holds at most one window of batches and results.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from medmill.builders.core.steps import Step
from medmill.builders.core.writer import BuildInfo
from medmill.builders.streaming.batch import BatchOut, BatchWork
from medmill.builders.streaming.inputs import DEFAULT_BATCH_ROWS, read_plan, read_slice
from medmill.builders.streaming.run import StreamRun, run_streaming
from medmill.schemas.errors import MedmillError


@dataclass
class _ReadAndWork:
    """A Ray task's share of a filter/dedup run: read its slice straight from the input path, run the batch work."""

    work: BatchWork

    def __call__(self, s: Any) -> BatchOut:
        return self.work(read_slice(s))


_FN_CACHE: dict[str, Callable[[Any], Any]] = {}  # per Ray worker process: the function of the running map


def _call_jobs(batch: dict[str, Any], fn_ref: list[Any]) -> dict[str, Any]:
    """One map_batches call: the function (fetched from the object store once per worker process), over
    the pickled jobs of the batch. The ref sits in a list so Ray hands it over unresolved."""
    import ray

    key = fn_ref[0].hex()
    if key not in _FN_CACHE:
        _FN_CACHE.clear()
        _FN_CACHE[key] = ray.get(fn_ref[0])
    fn = _FN_CACHE[key]
    return {"result": [pickle.dumps(fn(pickle.loads(blob)), protocol=5) for blob in batch["job"]]}


def ray_ordered_map(fn: Callable[[Any], Any], jobs: Iterable[Any], workers: int, window: int = 0) -> Iterator[Any]:
    """`fn(job)` for every job, results in input order, as Ray Data `map_batches` tasks on `workers` CPUs:
    the one ordered map every Ray path uses (filter/dedup slices, in-memory map stages, streamed builds).
    Jobs may come from a generator in the driver (a reader's batches), so they are sent `window` at a
    time (default 4 x workers): the driver never holds more than one window of jobs and results. `fn` is
    put in the object store once and fetched once per worker process; a worker's MedmillError comes back
    as its one line."""
    import ray

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    window = window or 4 * max(1, workers)
    fn_ref = [ray.put(fn)]
    it = iter(jobs)
    try:
        while chunk := list(islice(it, window)):
            ds = ray.data.from_items([{"job": pickle.dumps(j, protocol=5)} for j in chunk], override_num_blocks=len(chunk))
            ds = ds.map_batches(_call_jobs, fn_kwargs={"fn_ref": fn_ref}, batch_size=1, num_cpus=1,
                                concurrency=max(1, min(workers, len(chunk))), batch_format="numpy")
            del chunk
            for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=max(1, workers)):
                for blob in batch["result"]:
                    yield pickle.loads(blob)
    except Exception as e:  # a worker's MedmillError: its one line, not Ray's traceback
        raise user_error(e) from None


def connect(address: str, workers: int) -> None:
    try:
        import ray
    except ImportError:
        raise MedmillError("--executor ray needs Ray: pip install 'medmill[ray]'") from None
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or None, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise MedmillError(f"cannot start or join the Ray cluster {address or '(local)'}: {str(e).splitlines()[0]}") from None


def user_error(error: BaseException) -> BaseException:
    """The MedmillError a Ray task raised (a worker's fatal LLM error: bad key, unknown model), found
    inside Ray's wrappers, so the command shows its one line instead of Ray's traceback; else `error`."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, MedmillError):
            return MedmillError(str(e))
        # Ray sends the worker's traceback as text (its exception object does not survive the trip)
        found = _MEDMILL_ERROR.search(f"{getattr(e, 'traceback_str', '')}\n{e}")
        if found:
            return MedmillError(found.group(1).strip())
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return error


_MEDMILL_ERROR = re.compile(r"medmill\.schemas\.errors\.MedmillError: ([^\n]+)")


def ray_mapper(dirs: list[Path], batch_rows: int, workers: int):
    plan = read_plan(dirs, batch_rows)

    def mapper(work: BatchWork) -> Iterator[BatchOut]:
        # the plan is small (paths and row ranges): one window, one Ray Data pipeline
        return ray_ordered_map(_ReadAndWork(work), plan, workers, window=len(plan))

    return mapper


def run_on_ray(
    dirs: list[Path],
    out: Path,
    kind: str,
    steps: list[Step],
    info: BuildInfo,
    workers: int,
    address: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    started: float | None = None,
) -> StreamRun:
    connect(address, workers)
    import ray

    workers = workers or int(ray.cluster_resources().get("CPU", 1))
    mapper = ray_mapper(dirs, batch_rows, workers)
    return run_streaming(dirs, Path(out), kind, steps, info, workers, batch_rows, started, mapper=mapper)
