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
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medmill.builders.core.steps import Step
from medmill.builders.core.writer import BuildInfo
from medmill.builders.streaming.batch import BatchOut, BatchWork
from medmill.builders.streaming.inputs import DEFAULT_BATCH_ROWS, read_plan, read_slice
from medmill.builders.streaming.run import StreamRun, run_streaming
from medmill.schemas.errors import MedmillError


class _RayBatchWork:
    """The map_batches callable: one read slice in, one pickled BatchOut out."""

    def __init__(self, work: BatchWork) -> None:
        self.work = work

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        outs = []
        for blob in batch["slice"]:
            result = self.work(read_slice(pickle.loads(blob)))
            outs.append(pickle.dumps(result, protocol=5))
        return {"result": outs}


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
    import ray

    plan = read_plan(dirs, batch_rows)

    def mapper(work: BatchWork) -> Iterator[BatchOut]:
        if not plan:
            return
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ds = ray.data.from_items([{"slice": pickle.dumps(s)} for s in plan], override_num_blocks=len(plan))
        ds = ds.map_batches(_RayBatchWork, fn_constructor_args=(work,), batch_size=1, concurrency=max(1, workers),
                            num_cpus=1, batch_format="numpy")
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=max(1, workers)):
            for blob in batch["result"]:
                yield pickle.loads(blob)

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
