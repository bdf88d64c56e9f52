"""Streamed builds (`run_build` with `--executor local`, the default), for builders whose reader offers
its items as a stream (`Builder.read_stream`) and whose generation is map steps:

    reader batches ──(N processes: generation map steps -> curation map steps -> record-wise global
    steps)──> spill (parquet) + rejects per stage ──> dedup from compact state ──> splits from
    (group, id) per record ──> streaming writer (`write_streamed`) ──> manifest, card

The dataset dir is byte for byte the in-memory build's (`--executor memory`): rejects come out in the
in-memory executor's order (per chunk of `LocalExecutor().batch_size` items or records, step by
step), splits are `split_by_group`'s (`assign_groups` on group sizes), shards `write_streamed`'s.

Memory per record kept in the driver: its id and group key (arrow strings), the writer's size figures,
the dedup state (`curation/dedup_state.py`) and what a record-wise global step keeps (see
`RecordwiseStep`); at most `2 x workers` batches are in flight.

In `finish` and `figures`, `out.records` (the records to be written) and `out.rejects` (every reject, the writer's
exact duplicates included) are read back from the spill and the reject files when iterated; a builder
should rather report from `out.stats` and counters, accumulated batch by batch (generation map steps
may fold their per-batch stats: `fold_stats(acc, part)` / `final_stats(acc)`).
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medmill.builders.core.build import remove_stale_failed_rejects
from medmill.builders.core.builder import BuildContext, Builder, C, Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.fileinfo import describe_os_error
from medmill.builders.core.splits import assign_groups
from medmill.builders.core.steps import LocalExecutor, MapStep, Step
from medmill.builders.core.writer import BuildInfo, rmdir_if_empty
from medmill.builders.curation.dedup_state import BatchState, DedupState, batch_state
from medmill.builders.curation.record_dedup import meta_terms
from medmill.builders.curation.stages import DecontaminateStep, DedupStep
from medmill.builders.curation.text import record_text
from medmill.builders.streaming.batch import (
    ORIGIN_COL,
    RAW_META_COL,
    SPLIT_COL,
    TEXT_COL,
    DedupWork,
    StepTally,
    _tally_rejects,
    run_record_steps,
)
from medmill.builders.streaming.dedup import run_dedup
from medmill.builders.streaming.executors import DEFAULT_BATCH_ITEMS, ProcessExecutor, stream_batch_items
from medmill.builders.streaming.run import (
    _fail_without_records,
    _open_index,
    _work_dir,
    cluster_examples,
    ordered_map,
)
from medmill.builders.streaming.sizes import RowSizes, TableSizer
from medmill.builders.streaming.spill import Spill
from medmill.builders.streaming.stats import merge_stats
from medmill.builders.streaming.write import write_streamed
from medmill.schemas import KIND_COLUMNS, Record, RejectRow, record_class
from medmill.schemas.dataset_dir import ARROW_SCHEMAS
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import canonical_json

if TYPE_CHECKING:
    from medmill.builders.core.manifest import Manifest
    from medmill.builders.core.writer import CardRenderer

Figures = list[tuple[str, Any]]

CHUNK = LocalExecutor().batch_size  # the in-memory executor's chunk: its rejects come out chunk by chunk


@runtime_checkable
class StreamingExecutor(Protocol):
    """An executor that runs streamed builds: `StreamExecutor` here, `RayExecutor` on a cluster."""

    workers: int
    batch_items: int  # items per batch; divides CHUNK (`stream_batch_items`)

    def map_jobs(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]: ...


class StreamExecutor(ProcessExecutor):
    """`--executor local`: a builder that offers a stream builds streamed on `workers` processes
    (`batch_items` items per batch); any other runs in memory with its map steps on `workers`
    processes, as `ProcessExecutor`."""

    def __init__(self, workers: int, batch_items: int = DEFAULT_BATCH_ITEMS) -> None:
        super().__init__(workers)
        self.batch_items = stream_batch_items(batch_items)

    def map_jobs(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        """`fn` of every batch, in order, on the forked workers, at most 2 x workers in flight."""
        return ordered_map(fn, jobs, self.workers)


@runtime_checkable
class RecordwiseStep(Protocol):
    """A global step after dedup whose change to each record depends on that record alone and whose
    stats need the whole input (token counts): it runs per batch on every record and keeps compact
    facts per record; its stats are made from the facts of the records dedup kept."""

    name: str

    def per_batch(self, records: list[Record]) -> tuple[list[Record], pa.Table]:
        """The changed records and one row of facts per record."""

    def reduce(self, facts: pa.Table) -> tuple[dict[str, Any], Counter]:
        """(stats, counters) as the in-memory step reports them for the records whose facts these are."""


@dataclass
class StreamPlan:
    map_steps: list[MapStep]
    late_steps: list[Step]  # record-wise global steps judging each record alone (decontamination)
    dedup: DedupStep | None
    post_steps: list[Any]  # RecordwiseSteps after dedup


def plan_build_steps(steps: list[Step]) -> StreamPlan | None:
    """The curation steps sorted by how a stream runs them; None when one needs every record in memory."""
    plan = StreamPlan([], [], None, [])
    for step in steps:
        if isinstance(step, MapStep) and not (plan.late_steps or plan.dedup or plan.post_steps):
            plan.map_steps.append(step)
        elif isinstance(step, DecontaminateStep) and not (plan.dedup or plan.post_steps):
            plan.late_steps.append(step)
        elif isinstance(step, DedupStep) and not (plan.dedup or plan.post_steps):
            plan.dedup = step
        elif isinstance(step, RecordwiseStep):
            plan.post_steps.append(step)
        else:
            return None
    return plan


@dataclass
class BuildBatchOut:
    seq: int
    n_items: int
    generation: list[StepTally]
    n_generated: int
    steps: list[StepTally]  # map steps (reject ordinals among the batch's generated records), then late steps
    survivors: pa.Table
    sizes: RowSizes
    groups: pa.Array  # split group of every survivor
    facts: list[pa.Table]  # per post step
    dedup: BatchState | None = None
    terms: frozenset[str] = frozenset()  # facts the records carry in meta, for dedup's fact guard


def group_of(record: Record) -> str:
    """The writer's split group (`writer._group_of`): source group, else ref, else id."""
    return record.source.group or record.source.ref or record.id


@dataclass
class BuildWork:
    """One batch of items, in a worker: generation, curation map steps, record-wise global steps, then
    the rows to spill, their size figures, split groups and dedup state. Plain data leaves the worker."""

    kind: str
    generation: list[MapStep]
    plan: StreamPlan
    dedup: DedupWork | None = None

    def __call__(self, job: tuple[int, list[Any] | bytes]) -> BuildBatchOut:
        seq, items = job
        if isinstance(items, bytes):
            items = pickle.loads(items)
        n_items = len(items)
        gen: list[StepTally] = []
        batch: list[Any] = items
        for step in self.generation:
            t0 = time.perf_counter()
            result = step(batch)
            tally = StepTally(step.name, len(batch), len(result.records), 0.0, Counter(result.counters), dict(result.stats))
            tally.seconds = time.perf_counter() - t0
            _tally_rejects(tally, result.rejects)
            gen.append(tally)
            batch = result.records
        records: list[Record] = batch
        n_generated = len(records)
        records, tallies = run_record_steps([*self.plan.map_steps, *self.plan.late_steps], records)
        written = records
        facts = []
        for step in self.plan.post_steps:
            written, table = step.per_batch(written)
            facts.append(table)
        survivors, sizes = self._survivors(records, written)
        state = None
        terms: frozenset[str] = frozenset()
        if self.dedup is not None:
            if self.dedup.config.fact_guard:
                terms = meta_terms(records)  # as the in-memory dedup adds them (record_dedup.py)
            texts = [record_text(r, self.dedup.fields) for r in records]
            state = batch_state(texts, self.dedup.config, self.dedup.with_sigs)
            survivors = survivors.append_column(TEXT_COL, pa.array(texts, pa.string()))
            survivors = survivors.append_column(ORIGIN_COL, pa.array([self.dedup.origin(r) for r in records], pa.string()))
        groups = pa.array([group_of(r) for r in records], pa.string())
        return BuildBatchOut(seq, n_items, gen, n_generated, tallies, survivors, sizes, groups, facts, state, terms)

    def _survivors(self, records: list[Record], written: list[Record]) -> tuple[pa.Table, RowSizes]:
        """The rows as written (after the record-wise global steps) and, for dedup rejects, each
        record's meta as dedup saw it (before them)."""
        schema = ARROW_SCHEMAS[self.kind]
        columns = KIND_COLUMNS[self.kind]
        rows = []
        for r in written:
            row = r.to_row()
            rows.append({c: row.get(c) for c in columns})
        table = pa.Table.from_pylist(rows, schema=schema)
        sizes = TableSizer(schema).row_sizes(table)
        table = table.append_column(SPLIT_COL, pa.array(["train"] * len(rows), pa.string()))
        if self.dedup is not None:
            table = table.append_column(RAW_META_COL, pa.array([canonical_json(r.meta) for r in records], pa.string()))
        return table, sizes


class _ChunkedRejects:
    """Rejects of consecutive map steps in the in-memory executor's order: per chunk of CHUNK inputs,
    step by step, in input order; a chunk is written once every input before its end has been seen."""

    def __init__(self, path: Path, n_steps: int) -> None:
        self.path, self.n_steps = path, n_steps
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.pending: dict[int, list[list[str]]] = {}
        self.seen = 0

    def add(self, tallies: list[StepTally], n_inputs: int, ordinals: bool) -> None:
        for k, tally in enumerate(tallies):
            if ordinals:
                for line, at in zip(tally.rejects, tally.ordinals, strict=True):
                    self._slot((self.seen + at) // CHUNK)[k].append(line)
            else:  # the batch lies inside one chunk (StreamExecutor.batch_items divides CHUNK)
                self._slot(self.seen // CHUNK)[k].extend(tally.rejects)
        self.seen += n_inputs
        for chunk in sorted(c for c in self.pending if (c + 1) * CHUNK <= self.seen):
            self._flush(chunk)

    def _slot(self, chunk: int) -> list[list[str]]:
        return self.pending.setdefault(chunk, [[] for _ in range(self.n_steps)])

    def _flush(self, chunk: int) -> None:
        for lines in self.pending.pop(chunk):
            self.file.writelines(line + "\n" for line in lines)

    def close(self) -> Path:
        for chunk in sorted(self.pending):
            self._flush(chunk)
        self.file.close()
        return self.path


@dataclass
class _Totals:
    """What the steps did, summed over batches."""

    counters: dict[str, Counter] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    n_in: Counter = field(default_factory=Counter)
    n_out: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)

    def add(self, tally: StepTally, fold: Any = None) -> None:
        self.counters.setdefault(tally.name, Counter()).update(tally.counters)
        seen = self.stats.get(tally.name)
        if fold is not None:
            self.stats[tally.name] = fold(seen, tally.stats)
        else:
            self.stats[tally.name] = tally.stats if seen is None else merge_stats(seen, tally.stats)
        self.n_in[tally.name] += tally.n_in
        self.n_out[tally.name] += tally.n_out
        self.seconds[tally.name] += tally.seconds


def list_stream(inputs: Inputs, batch_items: int) -> ItemStream:
    """A stream over items a reader holds in memory anyway (a KG, text chunks): `inputs.items` stay for
    `generation` to look at (option pools, label sets); the records they make never pile up."""
    items = inputs.items

    def batches() -> Iterator[list[Any]]:
        for start in range(0, len(items), batch_items):
            yield items[start : start + batch_items]

    return ItemStream(inputs, batches, len(items))


def builder_streams(builder: Builder[Any], executor: Any, render_card: CardRenderer | None) -> bool:
    """True when this build runs streamed: the stream executor, a builder offering a stream, and the
    standard card (the streaming writer renders it)."""
    return (isinstance(executor, StreamingExecutor) and render_card is None
            and type(builder).read_stream is not Builder.read_stream)


def stream_build(
    builder: Builder[C], cfg: C, ctx: BuildContext, executor: StreamingExecutor, command: str | None,
    max_shard_bytes: int | None, started: float, skipped_dirs: list[Path],
) -> tuple[Manifest, Figures] | None:
    """Build `cfg.out` streamed (see the module docstring): its manifest and summary rows; None when the curation steps need every
    record in memory (the caller then builds in memory)."""
    if plan_build_steps(builder.steps(cfg, builder.kind, frozenset())) is None:
        return None
    out_dir = Path(cfg.out)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # the in-memory writer's words (writer.py), e.g. "<parent> is a file, not a folder"
        raise MedmillError(f"cannot create --out {out_dir}: {describe_os_error(out_dir, e)}") from None
    work = _work_dir(out_dir)
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())  # freed buffers go back to the system (see streaming/run.py)
    try:
        ctx.workers = executor.workers
        ctx.remote = getattr(executor, "remote", False)
        stream = builder.read_stream(cfg, ctx, work, executor.batch_items)
        if stream is None:
            return None
        return _run(builder, cfg, ctx, stream, executor, command, max_shard_bytes, started, skipped_dirs, work)
    finally:
        pa.set_memory_pool(pool)
        shutil.rmtree(work, ignore_errors=True)
        if created:
            rmdir_if_empty(out_dir)


def _jobs(stream: ItemStream) -> Iterator[tuple[int, list[Any] | bytes]]:
    yield from enumerate(stream.batches())


def _run(builder, cfg, ctx: BuildContext, stream: ItemStream, executor: StreamingExecutor, command, max_shard_bytes,
         started: float, skipped_dirs: list[Path], work: Path) -> tuple[Manifest, Figures]:
    inputs: Inputs = stream.inputs
    inputs.items_read = inputs.items_read or stream.items
    out = Collector()
    t1 = time.perf_counter()
    try:
        out.rejects.extend(inputs.rejects)
        protected = builder.protected_terms(cfg, inputs)
        generation = builder.generation(cfg, inputs, ctx, out)
        if not all(isinstance(s, MapStep) for s in generation):
            raise RuntimeError(f"{builder.name}: a streamed build's generation must be map steps only")
        # every worker runs every step: an LLM step takes its share of the limits (a builder streams an LLM
        # step only when its concurrency allows one engine per worker: `max_workers`)
        if any(s.max_workers is not None and s.max_workers < executor.workers for s in generation):
            raise RuntimeError(f"{builder.name}: a generation step runs on fewer than {executor.workers} workers")
        generation = [_for_workers(s, executor.workers, getattr(executor, "remote", False)) for s in generation]
        kind = inputs.kind or builder.kind
        plan = plan_build_steps(builder.steps(cfg, kind, protected))
        if plan is None:
            raise RuntimeError(f"{builder.name}: its curation steps cannot stream for kind {kind}")
        driver_rejects = work / "rejects-driver.jsonl"
        with open(driver_rejects, "w", encoding="utf-8") as f:
            f.writelines(out.rejects.lines())
        by_reason = Counter(out.rejects.by_reason)
    finally:
        out.rejects.close()
    out.rejects = _NoRejects()  # type: ignore[assignment]  # every later reject goes to the stage files
    dedup = plan.dedup
    dedup_work = DedupWork(dedup.fields, dedup.config, dedup.origin, dedup.index is not None) if dedup else None
    if dedup is not None and dedup.index:
        _open_index(dedup, kind)  # a bad or other-kind index is an error before anything is written
    job = BuildWork(kind, list(generation), plan, dedup_work)
    spill = Spill(work / "spill.parquet")
    state = DedupState(dedup.config, work / "sigs.u32" if dedup.index is not None else None, work / "bands") if dedup else None
    # generation steps whose rejects follow every earlier reject (a global step's, in memory) come last
    n_chunked = sum(1 for s in generation if not getattr(s, "whole_input_order", False))
    if any(not getattr(s, "whole_input_order", False) for s in generation[n_chunked:]):
        raise RuntimeError(f"{builder.name}: generation steps with whole_input_order must come last")
    gen_rejects = _ChunkedRejects(work / "rejects-generate.jsonl", n_chunked)
    whole_paths = [work / f"rejects-generate-{i}.jsonl" for i in range(len(generation) - n_chunked)]
    whole_files = [open(p, "w", encoding="utf-8") for p in whole_paths]  # noqa: SIM115 (closed below)
    map_rejects = _ChunkedRejects(work / "rejects-map.jsonl", len(plan.map_steps))
    late_paths = [work / f"rejects-late-{i}.jsonl" for i in range(len(plan.late_steps))]
    late_files = [open(p, "w", encoding="utf-8") for p in late_paths]  # noqa: SIM115 (closed below)
    folds = {s.name: getattr(s, "fold_stats", None) for s in generation}
    gen_totals, totals = _Totals(), _Totals()
    ids: list[pa.Array] = []
    groups: list[pa.Array] = []
    sizes: list[RowSizes] = []
    facts: list[list[pa.Table]] = [[] for _ in plan.post_steps]
    generated = 0
    terms: set[str] = set()
    n_map = len(plan.map_steps)
    t2 = time.perf_counter()
    try:
        with ctx.progress(f"building (streaming, {executor.workers} workers)", stream.items) as advance:
            for res in executor.map_jobs(job, _jobs(stream)):
                gen_rejects.add(res.generation[:n_chunked], res.n_items, ordinals=False)
                for f, tally in zip(whole_files, res.generation[n_chunked:], strict=True):
                    f.writelines(line + "\n" for line in tally.rejects)
                map_rejects.add(res.steps[:n_map], res.n_generated, ordinals=True)
                for f, tally in zip(late_files, res.steps[n_map:], strict=True):
                    f.writelines(line + "\n" for line in tally.rejects)
                for tally in res.generation:
                    gen_totals.add(tally, folds.get(tally.name))
                    by_reason.update(tally.by_reason)
                for tally in res.steps:
                    totals.add(tally)
                    by_reason.update(tally.by_reason)
                generated += res.n_generated
                spill.append(res.survivors)
                ids.append(res.survivors.column("id").combine_chunks())
                groups.append(res.groups)
                sizes.append(res.sizes)
                for k, table in enumerate(res.facts):
                    facts[k].append(table)
                if state is not None and res.dedup is not None:
                    state.add(res.dedup)
                terms |= res.terms
                advance(res.n_items, "items")
    finally:
        reject_files = [work / "rejects-driver.jsonl", gen_rejects.close(), *whole_paths, map_rejects.close()]
        for f in [*whole_files, *late_files]:
            f.close()
        reject_files += late_paths
        spill.close()
    t3 = time.perf_counter()

    # generation's figures, as run_build's `generate` notes them
    out.generated = generated
    for step in generation:
        for key, n in gen_totals.counters.get(step.name, Counter()).items():
            if not key.startswith("_"):  # private to the step (an LLM step's usage), as `LocalExecutor` keeps them
                out.counters[key] += n
        folded = gen_totals.stats.get(step.name) or {}
        final = getattr(step, "final_stats", None)
        table = {**step.summary(gen_totals.counters.get(step.name, Counter())), **(final(folded) if final else folded)}
        out.stats.update({k: v for k, v in table.items() if k not in ("in", "out", "dropped")})
    counters = Counter(inputs.counters)
    counters.update(out.counters)
    if skipped_dirs:
        counters["read.dataset_dirs_skipped"] = len(skipped_dirs)
    info = BuildInfo(
        kind=kind, builder=builder.name, command=command or f"medmill build-{builder.name}", params=builder.params(cfg),
        inputs=list(inputs.files), seed=cfg.seed, val_size=cfg.val_size, test_size=cfg.test_size,
        license=builder.license(cfg, inputs), source_licenses=builder.source_licenses(cfg, inputs), counters=counters,
        prompts=out.prompts, llm=out.llm, usage=out.usage, timings={"read": t1 - started, "generate": t3 - t2},
    )
    if max_shard_bytes is not None:
        info.max_shard_bytes = max_shard_bytes

    # curation's figures, in the in-memory manifest's order
    curation: dict[str, Any] = {}
    for st in [*plan.map_steps, *plan.late_steps]:
        c = totals.counters.get(st.name, Counter())
        summary = st.summary(c) if isinstance(st, MapStep) else totals.stats.get(st.name, {})
        curation[st.name] = {"in": totals.n_in[st.name], "out": totals.n_out[st.name],
                             "dropped": totals.n_in[st.name] - totals.n_out[st.name], **summary}
        info.counters.update({f"{st.name}.{k}": v for k, v in c.items() if not k.startswith("_")})
        info.timings[f"curate.{st.name}"] = totals.seconds[st.name]
    n_spill = len(spill)
    keep = np.ones(n_spill, dtype=bool)
    index = None
    dedup_result = None
    if dedup is not None and state is not None and dedup_work is not None:
        t4 = time.perf_counter()
        index = _open_index(dedup, kind) if dedup.index else None
        if terms:
            config = dedup_work.config
            dedup_work = replace(dedup_work, config=replace(config, protected_terms=config.protected_terms | terms))
        dedup_result = run_dedup(spill, state, dedup_work, kind, index, work / "rejects-dedup.jsonl", work / "clusters.jsonl")
        keep = dedup_result.decision.keep
        reject_files.append(work / "rejects-dedup.jsonl")
        by_reason.update(dedup_result.by_reason)
        info.counters.update({f"dedup.{k}": v for k, v in dedup_result.counters.items()})
        kept = int(keep.sum())
        curation["dedup"] = {"in": n_spill, "out": kept, "dropped": n_spill - kept, **dedup_result.stats,
                             "cluster_examples": cluster_examples(dedup_result.clusters_file)}
        info.timings["curate.dedup"] = time.perf_counter() - t4
    n_kept = int(keep.sum())
    keep_idx = pa.array(np.flatnonzero(keep))
    for step, parts in zip(plan.post_steps, facts, strict=True):
        kept_facts = pa.concat_tables(parts).take(keep_idx) if parts else pa.table({})
        stats, step_counters = step.reduce(kept_facts)
        curation[step.name] = {"in": n_kept, "out": n_kept, "dropped": 0, **stats}
        info.counters.update({f"{step.name}.{k}": v for k, v in step_counters.items()})
    info.curation = curation
    id_array = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
    split_array, first = _splits(id_array, pa.concat_arrays(groups) if groups else pa.array([], pa.string()), keep, cfg)
    info.timings["curate"] = time.perf_counter() - t3

    # the builder's final figures: `out.records` and `out.rejects` are read back from disk when iterated
    out.records = _KeptRecords(spill, first, kind)  # type: ignore[assignment]
    out.rejects = _AllRejects(list(reject_files), by_reason, spill, keep & ~first, kind)  # type: ignore[assignment]
    builder.finish(cfg, inputs, out)
    info.stats = dict(out.stats)
    info.description = builder.describe(cfg, inputs, out)
    info.timings["total"] = time.perf_counter() - started
    if n_kept == 0:
        raise _fail_without_records(Path(cfg.out), reject_files, by_reason)
    t5 = time.perf_counter()
    empty = TableSizer(ARROW_SCHEMAS[kind])
    manifest = write_streamed(Path(cfg.out), spill, keep, id_array, split_array, RowSizes.concat(sizes, len(empty.lists)),
                              reject_files, by_reason, info, work)
    info.timings["write"] = time.perf_counter() - t5
    if dedup_result is not None and index is not None:
        index.append(**dedup_result.index_rows)  # only once the dataset is written, as the in-memory step
    remove_stale_failed_rejects(Path(cfg.out))
    figures = list(builder.figures(cfg, inputs, out, manifest))
    if skipped_dirs:
        figures.append(("dataset dirs skipped (inside inputs)", len(skipped_dirs)))
    seconds = max(1e-9, t3 - t2)
    where = "Ray workers" if getattr(executor, "remote", False) else "processes"
    figures.append(("executor", f"streaming, {executor.workers} {where}"))
    figures.append(("records/s (generate + curation map steps)", round(generated / seconds)))
    figures += stage_rates(generation, gen_totals, [*plan.map_steps, *plan.late_steps], totals, info.timings, n_spill, n_kept)
    return manifest, figures


def _for_workers(step: MapStep, workers: int, remote: bool) -> MapStep:
    """The step as each of `workers` workers runs it (`MapStep.for_workers`; `remote`: on Ray, where a
    worker may not see this machine's disk), keeping its reject order."""
    shared = step.for_workers(workers, remote)
    if getattr(step, "whole_input_order", False) and not getattr(shared, "whole_input_order", False):
        shared.whole_input_order = True  # type: ignore[attr-defined]
    return shared


def stage_rates(generation: list[MapStep], gen_totals: _Totals, steps: list[Step], totals: _Totals,
                timings: dict[str, float], n_spill: int, n_kept: int) -> Figures:
    """records/s of every stage, as `medmill filter` and `dedup` show them: what the stage took in over
    its process seconds (summed over the workers, so per core), generation counting items; dedup and
    the writer over their wall time in the driver."""
    rows: Figures = []
    for step in generation:
        if gen_totals.seconds[step.name] > 0:
            rows.append((f"records/s {step.name} (items)", round(gen_totals.n_in[step.name] / gen_totals.seconds[step.name])))
    for step in steps:
        if totals.seconds[step.name] > 0:
            rows.append((f"records/s {step.name}", round(totals.n_in[step.name] / totals.seconds[step.name])))
    for name, n in (("dedup", n_spill), ("write", n_kept)):
        seconds = timings.get("curate.dedup" if name == "dedup" else name, 0.0)
        if seconds > 0:
            rows.append((f"records/s {name}", round(n / seconds)))
    return rows


def _splits(ids: pa.Array, groups: pa.Array, keep: np.ndarray, cfg: Any) -> tuple[pa.Array, np.ndarray]:
    """Every spill row's split, as the in-memory writer decides: records kept by dedup, first of each id
    (later ones are exact duplicates the writer rejects), grouped; a duplicate gets its first's split,
    since the streaming writer takes an id's split from its last survivor. Also which rows are written
    (kept, first of their id)."""
    n = len(ids)
    split_of_row = np.zeros(n, dtype=np.int8)  # 0 train, 1 validation, 2 test
    first_mask = np.zeros(n, dtype=bool)
    kept = np.flatnonzero(keep)
    if len(kept):
        kept_ids = ids.take(pa.array(kept))
        unique_ids = pc.unique(kept_ids)
        first = pc.index_in(unique_ids, value_set=kept_ids).to_numpy()  # first kept row of each id
        of_id = pc.index_in(kept_ids, value_set=unique_ids).to_numpy()  # each kept row's id
        first_groups = groups.take(pa.array(kept[first]))
        encoded = pc.dictionary_encode(first_groups)
        names = encoded.dictionary
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        group_sizes = np.bincount(codes, minlength=len(names))
        chosen = assign_groups(names.to_pylist(), group_sizes.tolist(), val_size=cfg.val_size, test_size=cfg.test_size, seed=cfg.seed)
        code_split = np.zeros(len(names), dtype=np.int8)
        for g, split in chosen.items():
            code_split[g] = 1 if split == "validation" else 2
        split_of_row[kept] = code_split[codes[of_id]]
        first_mask[kept[first]] = True
    labels = pa.array(["train", "validation", "test"], pa.string())
    return labels.take(pa.array(split_of_row.astype(np.int32))), first_mask


class _KeptRecords:
    """The records to be written, read back from the spill batch by batch when iterated."""

    def __init__(self, spill: Spill, written: np.ndarray, kind: str) -> None:
        self.spill, self.written, self.kind = spill, written, kind

    def __len__(self) -> int:
        return int(self.written.sum())

    def __iter__(self) -> Iterator[Record]:
        cls = record_class(self.kind)
        for at, table in self.spill.groups(KIND_COLUMNS[self.kind]):
            mask = self.written[at : at + table.num_rows]
            if mask.any():
                for row in table.filter(pa.array(mask)).to_pylist():
                    yield cls.from_row(row)


class _AllRejects:
    """Every reject of the build, as `out.rejects` holds them after curation in memory: the stage files
    in order, then the exact duplicates the writer will reject; read back when iterated."""

    def __init__(self, files: list[Path], by_reason: Counter, spill: Spill, duplicate: np.ndarray, kind: str) -> None:
        self.files, self.spill, self.duplicate, self.kind = files, spill, duplicate, kind
        self.by_reason = Counter(by_reason)
        if duplicate.any():
            self.by_reason["write/exact_duplicate"] += int(duplicate.sum())

    def __len__(self) -> int:
        return sum(self.by_reason.values())

    def __iter__(self) -> Iterator[RejectRow]:
        for path in self.files:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    yield RejectRow.model_validate(json.loads(line))
        for at, table in self.spill.groups(KIND_COLUMNS[self.kind]):
            mask = self.duplicate[at : at + table.num_rows]
            if mask.any():
                for row in table.filter(pa.array(mask)).to_pylist():
                    yield RejectRow(stage="write", reason="exact_duplicate", message=f"same content as record {row['id']}",
                                    source=row.get("source"), raw=row)

    def write(self, row: RejectRow) -> None:
        raise RuntimeError("a streamed build takes no rejects after curation")

    extend = write


class _NoRejects:
    """`out.rejects` after the stream started: every reject goes to a stage file (a builder's `finish`
    or `describe` rejecting here would be lost, so it is an error)."""

    by_reason: Counter = Counter()

    def write(self, row: RejectRow) -> None:
        raise RuntimeError("a streamed build takes no rejects after generation started")

    extend = write

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        pass
