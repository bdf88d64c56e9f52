"""The local streaming executor for runs over dataset dirs (`medmill filter`, `medmill dedup`):

    input batches ──(N processes: read rows, map steps, dedup state)──> spill + rejects per stage
    ──> dedup decision (compact state; candidate texts read back) ──> streaming writer

Memory stays flat in the input size apart from the dedup state (see `curation/dedup_state.py`) and
24 B per surviving record for its id and split; at most `2 x workers` batches are in flight.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from medmill.builders.core.manifest import Manifest
from medmill.builders.core.pipeline import Step
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.dedup_state import DedupState
from medmill.builders.curation.index import DedupIndex
from medmill.builders.streaming.batch import SPLIT_COL, BatchOut, BatchWork, DedupWork
from medmill.builders.streaming.dedup import StreamDedupResult, run_dedup
from medmill.builders.streaming.inputs import DEFAULT_BATCH_ROWS, InputBatch, iter_batches
from medmill.builders.streaming.sizes import RowSizes, TableSizer
from medmill.builders.streaming.spill import Spill
from medmill.builders.streaming.stats import merge_stats
from medmill.builders.streaming.write import write_streamed
from medmill.schemas.dataset_dir import ARROW_SCHEMAS

_WORK: BatchWork | None = None  # set before the pool forks, so step closures need no pickling


def _run_global(batch: InputBatch) -> BatchOut:
    assert _WORK is not None
    return _WORK(batch)


def ordered_map(work: BatchWork, batches: Iterable[InputBatch], workers: int) -> Iterator[BatchOut]:
    """Results in input order, with at most 2 x workers batches read ahead (bounded memory)."""
    global _WORK
    if workers <= 1:
        for b in batches:
            yield work(b)
        return
    _WORK = work
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            pending: deque = deque()
            for b in batches:
                pending.append(pool.submit(_run_global, b))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        _WORK = None


@dataclass
class StreamRun:
    """What a streamed run did, for the manifest and the summary."""

    manifest: Manifest
    records_read: int
    stage_rates: list[tuple[str, int, float]]  # (stage, records in, seconds) for records/s per stage
    dedup: StreamDedupResult | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class DedupPlan:
    work: DedupWork
    index: DedupIndex | None = None
    on_result: Callable[[StreamDedupResult, BuildInfo], None] | None = None  # e.g. keep it for the index
    clusters_file: str | None = "clusters.jsonl"  # the cluster report's name in the dataset dir (None: not written)


def run_streaming(
    dirs: list[Path],
    out: Path,
    kind: str,
    steps: list[Step],
    info: BuildInfo,
    dedup: DedupPlan | None = None,
    workers: int = 1,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    started: float | None = None,
    on_batch: Callable[[int], None] | None = None,
    mapper: Mapper | None = None,
) -> StreamRun:
    """Stream `dirs` through `steps` (and `dedup`) into the dataset dir `out`. `mapper` runs the batch
    work somewhere else (the Ray executor); by default on `workers` local processes."""
    t_start = time.perf_counter()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.stream-", dir=Path(out).parent))
    mapper = mapper or (lambda work: ordered_map(work, iter_batches(dirs, batch_rows), workers))
    try:
        return _run(out, kind, steps, info, dedup, workers, mapper, started or t_start, on_batch, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


Mapper = Callable[[BatchWork], Iterable[BatchOut]]  # batch work -> its results, in input order


def _run(out, kind, steps, info, dedup, workers, mapper, started, on_batch, work_dir) -> StreamRun:
    with_sigs = dedup is not None and dedup.index is not None
    if dedup is not None:
        dedup.work.with_sigs = with_sigs
    work = BatchWork(kind, steps, dedup.work if dedup else None)
    spill = Spill(work_dir / "spill.parquet")
    state = DedupState(dedup.work.config, work_dir / "sigs.u32" if with_sigs else None) if dedup else None
    names = ["read", *(s.name for s in steps)]
    reject_files = [work_dir / f"rejects-{i:02d}-{n}.jsonl" for i, n in enumerate(names)]
    handles = [open(f, "w", encoding="utf-8") for f in reject_files]  # noqa: SIM115 (closed below)
    by_reason: Counter = Counter()
    counters: Counter = Counter()
    stats: dict[str, dict[str, Any]] = {}
    seconds: Counter = Counter()
    n_in: Counter = Counter()
    per_dir: Counter = Counter()
    ids: list[pa.Array] = []
    splits: list[pa.Array] = []
    sizes: list[RowSizes] = []
    read = 0
    t0 = time.perf_counter()
    try:
        for res in mapper(work):
            read += res.read_ok + len(res.read.rejects)
            per_dir[res.origin] += res.read_ok
            for handle, tally in zip(handles, [res.read, *res.steps], strict=True):
                handle.writelines(line + "\n" for line in tally.rejects)
                by_reason.update(tally.by_reason)
            for tally in res.steps:
                counters.update({f"{tally.name}.{k}": v for k, v in tally.counters.items()})
                seen = stats.get(tally.name)
                stats[tally.name] = tally.stats if seen is None else merge_stats(seen, tally.stats)
                n_in[tally.name] += tally.n_in
                seconds[tally.name] += tally.seconds
                n_in[f"{tally.name}.out"] += tally.n_out
            spill.append(res.survivors)
            ids.append(res.survivors.column("id").combine_chunks())
            splits.append(res.survivors.column(SPLIT_COL).combine_chunks())
            sizes.append(res.sizes)
            if state is not None and res.dedup is not None:
                state.add(res.dedup)
            if on_batch:
                on_batch(res.read_ok + len(res.read.rejects))
    finally:
        for h in handles:
            h.close()
        spill.close()
    timings = {"stream.map": time.perf_counter() - t0}
    curation: dict[str, Any] = dict(info.curation)
    for s in steps:
        curation[s.name] = {"in": n_in[s.name], "out": n_in[f"{s.name}.out"], "dropped": n_in[s.name] - n_in[f"{s.name}.out"],
                            **stats.get(s.name, {})}
        info.timings[f"curate.{s.name}"] = seconds[s.name]
    n_survivors = len(spill)
    keep = np.ones(n_survivors, dtype=bool)
    dedup_result = None
    rates = [(s.name, n_in[s.name], seconds[s.name] / max(1, workers)) for s in steps]
    if dedup is not None and state is not None:
        t1 = time.perf_counter()
        dedup_rejects = work_dir / "rejects-dedup.jsonl"
        dedup_result = run_dedup(spill, state, dedup.work, kind, dedup.index, dedup_rejects, work_dir / "clusters.jsonl")
        keep = dedup_result.decision.keep
        reject_files.append(dedup_rejects)
        by_reason.update(dedup_result.by_reason)
        counters.update({f"dedup.{k}": v for k, v in dedup_result.counters.items()})
        kept = int(keep.sum())
        curation["dedup"] = {"in": n_survivors, "out": kept, "dropped": n_survivors - kept, **dedup_result.stats}
        timings["stream.dedup"] = time.perf_counter() - t1
        info.timings["curate.dedup"] = timings["stream.dedup"]
        rates.append(("dedup", n_survivors, timings["stream.dedup"]))
        if dedup.on_result:
            dedup.on_result(dedup_result, info)
    n_final = int(keep.sum())
    curation["finalise"] = {"in": n_final, "out": n_final, "dropped": 0}
    info.curation = curation
    info.counters.update(counters)
    info.counters.update({f"read.{d}": n for d, n in per_dir.items()})
    info.timings["curate"] = time.perf_counter() - t0
    info.timings["total"] = time.perf_counter() - started
    info.timings.update(timings)
    t2 = time.perf_counter()
    empty = TableSizer(ARROW_SCHEMAS[kind])
    all_sizes = RowSizes.concat(sizes, len(empty.lists))
    id_array = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
    split_array = pa.concat_arrays(splits) if splits else pa.array([], pa.string())
    extra = {dedup.clusters_file: dedup_result.clusters_file} if dedup and dedup_result and dedup.clusters_file else {}
    manifest = write_streamed(out, spill, keep, id_array, split_array, all_sizes, reject_files, by_reason, info, work_dir, extra)
    timings["stream.write"] = time.perf_counter() - t2
    rates.append(("write", n_final, timings["stream.write"]))
    return StreamRun(manifest, read, rates, dedup_result, timings)
