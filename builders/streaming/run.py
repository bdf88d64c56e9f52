"""The local streaming executor for runs over dataset dirs (`medmill filter`, `medmill dedup`):

    slice plan ──(N processes: read own slice, map steps, dedup state, write own spill part)──>
    driver: rejects per stage, id keys ──> dedup decision (compact state; candidate texts read back)
    ──> streaming writer

Memory stays flat in the input size apart from the dedup state (see `curation/dedup_state.py`) and
9 B per surviving record (its id's 8-byte sort key, its split's 1-byte code; the writer's id sort
adds 20-32 B per record for a moment, its later steps less: `write.py`); at most `2 x workers`
batches are in flight, and rows never travel between processes (workers read their own slices and
write their own spill parts).
"""

from __future__ import annotations

import heapq
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from medmill.builders.core.build import no_records_error, remove_stale_failed_rejects
from medmill.builders.core.forked import forked_imap
from medmill.builders.core.malloc import fixed_mmap_threshold
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import LocalExecutor, MapStep, Step
from medmill.builders.core.writer import BuildInfo, check_out_dir, failed_rejects_path, rmdir_if_empty
from medmill.builders.curation.dedup_state import DedupState
from medmill.builders.curation.index import DedupIndex
from medmill.builders.curation.over_dirs import KeepSplits
from medmill.builders.curation.stages import (
    CLUSTER_EXAMPLE_MEMBERS,
    CLUSTER_EXAMPLES,
    DecontaminateStep,
    DedupStep,
)
from medmill.builders.streaming.batch import BatchOut, BatchWork, DedupWork
from medmill.builders.streaming.dedup import StreamDedupResult, run_dedup
from medmill.builders.streaming.inputs import DEFAULT_BATCH_ROWS, InputBatch, Slice, plan_batches, read_slice
from medmill.builders.streaming.sizes import SizeTotals
from medmill.builders.streaming.spill import Spill
from medmill.builders.streaming.stats import merge_stats
from medmill.builders.streaming.write import write_spill
from medmill.schemas.errors import MedmillError


def ordered_map(work: Callable[[Any], BatchOut], items: Iterable[Any], workers: int) -> Iterator[BatchOut]:
    """`work` of every item, results in input order, with at most 2 x workers items in flight (bounded memory)."""
    return forked_imap(work, items, workers)


@dataclass
class _ReadAndWork:
    """A worker's whole share of a batch: read its slice, run the batch work (which writes the spill part)."""

    work: BatchWork

    def __call__(self, s: Slice | InputBatch) -> BatchOut:
        return self.work(s if isinstance(s, InputBatch) else read_slice(s))


@dataclass
class LocalMapper:
    """The local executor: workers read their own slices and write their own spill parts, so only the
    slice plan goes to them and only counts, keys and rejects come back (`writes_spill`)."""

    dirs: list[Path]
    batch_rows: int
    workers: int
    writes_spill: bool = True

    def __call__(self, work: BatchWork) -> Iterator[BatchOut]:
        return ordered_map(_ReadAndWork(work), plan_batches(self.dirs, self.batch_rows), self.workers)


@dataclass
class StreamRun:
    """What a streamed run did, for the manifest and the summary."""

    manifest: Manifest
    records_read: int
    stage_rates: list[tuple[str, int, float]]  # (stage, records in, seconds) for records/s per stage
    dedup: StreamDedupResult | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class StepPlan:
    """The steps of a run, sorted by how a stream runs them."""

    map_steps: list[Step]  # per batch, rejects in the in-memory executor's chunk order
    late_steps: list[Step]  # global steps that judge record by record (decontaminate): per batch, rejects after the map steps'
    dedup: DedupStep | None  # the global dedup, from compact state


def plan_steps(steps: list[Step]) -> StepPlan:
    """Sort `steps`; a global step the stream cannot run is a clear error."""
    plan = StepPlan([], [], None)
    for step in steps:
        if isinstance(step, MapStep) and not plan.late_steps and plan.dedup is None:
            plan.map_steps.append(step)
        elif isinstance(step, DecontaminateStep) and plan.dedup is None:
            plan.late_steps.append(step)
        elif isinstance(step, DedupStep) and plan.dedup is None:
            plan.dedup = step
        elif isinstance(step, KeepSplits):
            continue  # the streaming writer keeps every record's split
        else:
            raise MedmillError(f"step {step.name} needs every record in memory here; use --executor memory")
    return plan


def run_streaming(
    dirs: list[Path],
    out: Path,
    kind: str,
    steps: list[Step],
    info: BuildInfo,
    workers: int = 1,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    started: float | None = None,
    on_batch: Callable[[int], None] | None = None,
    mapper: Mapper | None = None,
) -> StreamRun:
    """Stream `dirs` through `steps` (and `dedup`) into the dataset dir `out`. `mapper` runs the batch
    work somewhere else (the Ray executor); by default on `workers` local processes."""
    t_start = time.perf_counter()
    out = Path(out)
    check_out_dir(out)
    plan = plan_steps(list(steps))
    if plan.dedup is not None and plan.dedup.index:
        _open_index(plan.dedup, kind)  # a bad or other-kind index is an error before anything is written
    created = not out.exists()
    work_dir = _work_dir(out)
    mapper = mapper or LocalMapper(list(dirs), batch_rows, workers)
    # the system allocator hands freed buffers back; arrow's default pool keeps them, which raised the
    # writer's peak by ~25 % (bench/scale.py)
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    fixed_mmap_threshold()
    try:
        return _run(out, kind, plan, info, workers, mapper, started or t_start, on_batch, work_dir)
    finally:
        pa.set_memory_pool(pool)
        shutil.rmtree(work_dir, ignore_errors=True)
        if created:
            rmdir_if_empty(out)


def _open_index(dedup: DedupStep, kind: str) -> DedupIndex:
    """The dedup index, refusing records of another kind than it holds (as the in-memory DedupStep)."""
    index = DedupIndex.open(dedup.index, dedup.config)
    index.check_kind(dedup.kind or kind)
    return index


WORK_PREFIX = ".medmill-work-"


def _work_dir(out: Path) -> Path:
    """The spill and per-stage files live INSIDE `out` (the file system the dataset goes to, which may
    be a mount point); work left by a killed run is removed first."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob(WORK_PREFIX + "*"):
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=out))
    except OSError as e:
        raise MedmillError(f"cannot write into --out {out}: {e.strerror or e}") from None


def _fail_without_records(out: Path, reject_files: list[Path], by_reason: Counter) -> MedmillError:
    """As the in-memory build: --out stays as it was; the rejects go beside it."""
    where: Path | None = failed_rejects_path(out)
    try:
        with open(where, "wb") as dst:
            for f in reject_files:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, dst)
    except OSError:
        where = None
    return no_records_error(out, by_reason, where)


Mapper = Callable[[BatchWork], Iterable[BatchOut]]  # batch work -> its results, in input order


def _run(out, kind, plan: StepPlan, info, workers, mapper, started, on_batch, work_dir) -> StreamRun:
    dedup = plan.dedup
    dedup_work = DedupWork(dedup.fields, dedup.config, dedup.origin, dedup.index is not None) if dedup else None
    spill = Spill(work_dir / "spill.parquet")
    work = BatchWork(kind, plan.map_steps, plan.late_steps, dedup_work, spill.path if getattr(mapper, "writes_spill", False) else None)
    state = DedupState(dedup.config, work_dir / "sigs.u32" if dedup.index is not None else None, work_dir / "bands") if dedup else None
    terms: set[str] = set()
    steps = [*plan.map_steps, *plan.late_steps]
    rejects = _RejectOrder(work_dir, len(plan.map_steps), len(plan.late_steps))
    by_reason: Counter = Counter()
    counters: dict[str, Counter] = {st.name: Counter() for st in steps}
    stats: dict[str, dict[str, Any]] = {}
    seconds: Counter = Counter()
    n_in: Counter = Counter()
    per_dir: Counter = Counter()
    keys: list[np.ndarray] = []  # 8 B per surviving record: its id's sort key
    split_codes: list[np.ndarray] = []  # 1 B per surviving record: its split, an index into split_names
    split_names: list[str] = []
    totals: dict[str, SizeTotals] = {}  # per split: size figures of its survivors
    read = 0
    t0 = time.perf_counter()
    try:
        for res in mapper(work):
            read += res.read_ok + len(res.read.rejects)
            per_dir[res.origin] += res.read_ok
            rejects.add(res)
            for tally in [res.read, *res.steps]:
                by_reason.update(tally.by_reason)
            for tally in res.steps:
                counters[tally.name].update(tally.counters)
                seen = stats.get(tally.name)
                stats[tally.name] = tally.stats if seen is None else merge_stats(seen, tally.stats)
                n_in[tally.name] += tally.n_in
                seconds[tally.name] += tally.seconds
                n_in[f"{tally.name}.out"] += tally.n_out
            if res.part is not None:
                spill.add_part(Path(res.part), res.n_survivors)
            elif res.survivors is not None:
                spill.append(res.survivors, res.seq)
            keys.append(res.keys)
            for name in res.split_names:
                if name not in split_names:
                    split_names.append(name)
            lookup = np.array([split_names.index(name) for name in res.split_names], np.uint8)
            split_codes.append(lookup[res.split_codes] if len(lookup) else np.zeros(0, np.uint8))
            for name, t in res.totals.items():
                totals[name] = totals[name] + t if name in totals else t
            if state is not None and res.dedup is not None:
                state.add(res.dedup)
            terms |= res.terms
            if on_batch:
                on_batch(res.read_ok + len(res.read.rejects))
    finally:
        reject_files = rejects.close()
        spill.close()
    timings = {"stream.map": time.perf_counter() - t0}
    curation: dict[str, Any] = dict(info.curation)
    for st in steps:
        summary = st.summary(counters[st.name]) if isinstance(st, MapStep) else stats.get(st.name, {})
        curation[st.name] = {"in": n_in[st.name], "out": n_in[f"{st.name}.out"], "dropped": n_in[st.name] - n_in[f"{st.name}.out"],
                             **summary}
        info.counters.update({f"{st.name}.{k}": v for k, v in counters[st.name].items()})
        info.timings[f"curate.{st.name}"] = seconds[st.name]
    n_survivors = len(spill)
    keep = np.ones(n_survivors, dtype=bool)
    dedup_result = None
    rates = [(st.name, n_in[st.name], seconds[st.name] / max(1, workers)) for st in steps]
    extra: dict[str, Path] = {}
    if dedup is not None and state is not None and dedup_work is not None:
        t1 = time.perf_counter()
        dedup_rejects = work_dir / "rejects-dedup.jsonl"
        index = _open_index(dedup, kind) if dedup.index else None
        if terms:  # the facts the records carry (KG entities and values), as the in-memory dedup adds them
            guarded = replace(dedup_work.config, protected_terms=dedup_work.config.protected_terms | terms)
            dedup_work = replace(dedup_work, config=guarded)
        dedup_result = run_dedup(spill, state, dedup_work, kind, index, dedup_rejects, work_dir / "clusters.jsonl")
        keep = dedup_result.decision.keep
        reject_files.append(dedup_rejects)
        by_reason.update(dedup_result.by_reason)
        info.counters.update({f"dedup.{k}": v for k, v in dedup_result.counters.items()})
        kept = int(keep.sum())
        dedup_stats = dict(dedup_result.stats)
        if dedup.clusters_file:
            extra["clusters.jsonl"] = dedup_result.clusters_file
        else:
            dedup_stats["cluster_examples"] = cluster_examples(dedup_result.clusters_file)
        curation["dedup"] = {"in": n_survivors, "out": kept, "dropped": n_survivors - kept, **dedup_stats}
        timings["stream.dedup"] = time.perf_counter() - t1
        info.timings["curate.dedup"] = timings["stream.dedup"]
        rates.append(("dedup", n_survivors, timings["stream.dedup"]))
    n_final = int(keep.sum())
    curation["finalise"] = {"in": n_final, "out": n_final, "dropped": 0}
    info.curation = curation
    info.counters.update({f"read.{d}": n for d, n in per_dir.items()})
    info.timings["curate"] = time.perf_counter() - t0
    info.timings["total"] = time.perf_counter() - started
    info.timings.update(timings)
    if n_final == 0:
        raise _fail_without_records(out, reject_files, by_reason)
    t2 = time.perf_counter()
    all_codes = np.concatenate(split_codes) if split_codes else np.zeros(0, np.uint8)
    del split_codes
    # the per-batch key arrays go as a list: the writer empties it, freeing them once sorted
    manifest = write_spill(out, spill, keep, keys, all_codes, split_names, totals, reject_files, by_reason, info,
                           work_dir, extra)
    timings["stream.write"] = time.perf_counter() - t2
    rates.append(("write", n_final, timings["stream.write"]))
    if dedup_result is not None and index is not None:
        # only once the dataset is written, as the in-memory dedup step does
        index.append(**dedup_result.index_rows)
    remove_stale_failed_rejects(out)
    return StreamRun(manifest, read, rates, dedup_result, timings)


class _RejectOrder:
    """Rejects in the order the in-memory executor writes them: read rejects; then, per chunk of
    `LocalExecutor().batch_size` read records, each map step's rejects of that chunk; then the
    record-wise global steps' rejects (each over everything, in order)."""

    def __init__(self, work_dir: Path, n_map: int, n_late: int) -> None:
        self.chunk = LocalExecutor().batch_size
        self.n_map = n_map
        self.paths = [work_dir / "rejects-read.jsonl", work_dir / "rejects-map.jsonl",
                      *(work_dir / f"rejects-late-{i}.jsonl" for i in range(n_late))]
        self.files = [open(p, "w", encoding="utf-8") for p in self.paths]  # noqa: SIM115 (closed in close())
        self.pending: dict[int, list[list[str]]] = {}
        self.read_before = 0

    def add(self, res: BatchOut) -> None:
        self.files[0].writelines(line + "\n" for line in res.read.rejects)
        for k, tally in enumerate(res.steps):
            if k >= self.n_map:
                self.files[2 + k - self.n_map].writelines(line + "\n" for line in tally.rejects)
                continue
            for line, at in zip(tally.rejects, tally.ordinals, strict=True):
                chunk = (self.read_before + at) // self.chunk
                self.pending.setdefault(chunk, [[] for _ in range(self.n_map)])[k].append(line)
        self.read_before += res.read_ok
        for chunk in sorted(c for c in self.pending if (c + 1) * self.chunk <= self.read_before):
            self._flush(chunk)

    def _flush(self, chunk: int) -> None:
        for lines in self.pending.pop(chunk):
            self.files[1].writelines(line + "\n" for line in lines)

    def close(self) -> list[Path]:
        for chunk in sorted(self.pending):
            self._flush(chunk)
        for f in self.files:
            f.close()
        return list(self.paths)


def cluster_examples(clusters_file: Path, largest: int = CLUSTER_EXAMPLES, members: int = CLUSTER_EXAMPLE_MEMBERS) -> list[dict]:
    """The largest clusters (first seen on ties), as a build's manifest keeps them."""
    best: list[tuple[int, int, dict]] = []
    with open(clusters_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            c = json.loads(line)
            heapq.heappush(best, (len(c["members"]), -i, c))
            if len(best) > largest:
                heapq.heappop(best)
    ordered = [c for _, _, c in sorted(best, key=lambda t: (-t[0], -t[1]))]
    return [{**c, "members": c["members"][:members]} for c in ordered]
