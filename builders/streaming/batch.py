"""The work done on one input batch, in a worker process: rows -> records (bad rows -> read rejects)
-> the map steps (validate, quality, PII, safety, decontaminate) -> surviving rows as an arrow table,
their size figures for the writer and, when dedup follows, their compact dedup state.

Everything that leaves a worker is plain data (arrow tables, numpy arrays, JSON lines, counters), so
results pickle cheaply and the parent never rebuilds record objects.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from medmill.builders.core.steps import Step
from medmill.builders.curation.dedup import DedupConfig
from medmill.builders.curation.dedup_state import BatchState, batch_state
from medmill.builders.curation.inputs import _SPLIT_KEY, ORIGIN_KEY
from medmill.builders.curation.record_dedup import meta_terms
from medmill.builders.curation.stages import builder_origin
from medmill.builders.curation.text import record_text
from medmill.builders.streaming.arrow_rows import rows_to_table
from medmill.builders.streaming.inputs import InputBatch
from medmill.builders.streaming.keys import id_keys
from medmill.builders.streaming.sizes import SizeTotals, TableSizer
from medmill.builders.streaming.spill import part_path, write_part
from medmill.schemas import KIND_COLUMNS, RejectRow, Source, record_class
from medmill.schemas.dataset_dir import ARROW_SCHEMAS
from medmill.schemas.records import canonical_json, meta_of

BATCH_GC_THRESHOLD = 50_000  # allocations between young-generation collections while a batch runs

# extra spill columns beside the record's own
SPLIT_COL, RAW_META_COL, TEXT_COL, ORIGIN_COL = "_split", "_raw_meta", "_compared", "_origin"


@dataclass
class StepTally:
    name: str
    n_in: int = 0
    n_out: int = 0
    seconds: float = 0.0
    counters: Counter = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)
    rejects: list[str] = field(default_factory=list)  # JSON lines
    by_reason: Counter = field(default_factory=Counter)
    ordinals: list[int] = field(default_factory=list)  # per reject: its record's index among the batch's read records


@dataclass
class BatchOut:
    seq: int
    origin: str
    read_ok: int
    read: StepTally
    steps: list[StepTally]
    survivors: pa.Table | None  # kind columns (final meta) + SPLIT_COL [+ RAW_META_COL, TEXT_COL, ORIGIN_COL]; None: in `part`
    n_survivors: int
    keys: np.ndarray  # per survivor: uint64 sort key of its id (`keys.id_keys`)
    split_codes: np.ndarray  # per survivor: uint8 index into split_names
    split_names: list[str]
    totals: dict[str, SizeTotals]  # per split: what the survivors of that split add to its table size
    part: str | None = None  # the spill part the worker wrote the survivors to
    dedup: BatchState | None = None
    terms: frozenset[str] = frozenset()  # facts the survivors carry in meta: protected terms of the fact guard


@dataclass
class DedupWork:
    fields: list[str]
    config: DedupConfig
    origin: Callable[[Any], str] = builder_origin  # what a dedup reject names as the kept record's origin
    with_sigs: bool = False


def _dropped(inputs: list, rejects: list[RejectRow]) -> list[int]:
    """Positions of the inputs a step rejected. Steps reject in input order and a reject's raw row is
    its record, so walking both in order pairs them (records with equal ids are equal in content, so
    an ambiguous pairing gives the same positions' fate)."""
    if not rejects:
        return []
    ids = [r.id for r in inputs]
    out, at = [], 0
    for reject in rejects:
        rid = reject.raw.get("id") if isinstance(reject.raw, dict) else None
        try:
            at = ids.index(rid, at)  # the next input with the reject's id (a C-speed scan)
        except ValueError:
            raise RuntimeError("a step's rejects do not follow its input order") from None
        out.append(at)
        at += 1
    return out


def _tally_rejects(tally: StepTally, rejects: list[RejectRow]) -> None:
    for r in rejects:
        tally.rejects.append(r.to_json())
        tally.by_reason[f"{r.stage}/{r.reason}"] += 1


def run_record_steps(steps: list, records: list) -> tuple[list, list[StepTally]]:
    """Record steps over one batch: the survivors, and per step a tally whose `ordinals` name each
    dropped record by its index in `records` (so rejects can be put back in the in-memory order)."""
    positions = list(range(len(records)))  # each current record's index among the batch's input records
    tallies = []
    for step in steps:
        t0 = time.perf_counter()
        result = step(records)
        tally = StepTally(step.name, len(records), len(result.records), time.perf_counter() - t0,
                          Counter(result.counters), dict(result.stats))
        if result.on_commit or result.files or result.splits is not None:
            raise RuntimeError(f"step {step.name} needs every record at once; it cannot run per batch")
        _tally_rejects(tally, result.rejects)
        dropped = _dropped(records, result.rejects)
        tally.ordinals = [positions[i] for i in dropped]
        if dropped:
            gone = set(dropped)
            positions = [p for i, p in enumerate(positions) if i not in gone]
        tallies.append(tally)
        records = result.records
    return records, tallies


@dataclass
class BatchWork:
    """Callable on an InputBatch: the map steps, then the record-wise global steps (decontamination),
    then the dedup state. Steps are the picklable classes of `builders/core/steps.py`."""

    kind: str
    steps: list[Step]  # MapSteps, in order
    late_steps: list[Step] = field(default_factory=list)  # global steps that judge record by record
    dedup: DedupWork | None = None
    spill: Path | None = None  # a local spill: the worker writes the survivors as the spill's part of its batch

    def __call__(self, batch: InputBatch) -> BatchOut:
        # a batch makes ~10 objects per record, almost none in cycles: collecting every 700 allocations
        # cost ~10 % of the batch; the thresholds are the process's again afterwards
        thresholds = gc.get_threshold()
        gc.set_threshold(BATCH_GC_THRESHOLD, *thresholds[1:])
        try:
            return self._run(batch)
        finally:
            gc.set_threshold(*thresholds)

    def _run(self, batch: InputBatch) -> BatchOut:
        cls = record_class(self.kind)
        read = StepTally("read")
        records = []
        rejects: list[RejectRow] = []
        parse = _MetaCache()
        for i, row in enumerate(_rows(batch.table)):
            try:
                rec = cls.from_row(_with_origin(row, batch.origin, batch.split, parse))
            except (ValidationError, ValueError, TypeError) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                line = batch.first_row + i
                rejects.append(
                    RejectRow(stage="read", reason="invalid_record", message=f"{batch.file} row {line}: {msg}",
                              source=Source(file=batch.file, line=line, builder="read"), raw=row)
                )
                continue
            records.append(rec)
        _tally_rejects(read, rejects)
        read_ok = len(records)
        records, tallies = run_record_steps([*self.steps, *self.late_steps], records)
        survivors, splits, totals = self._survivors(records)
        state = None
        terms: frozenset[str] = frozenset()
        if self.dedup is not None:
            if self.dedup.config.fact_guard:
                terms = meta_terms(records)  # as the in-memory dedup adds them (curation/record_dedup.py)
            texts = [record_text(r, self.dedup.fields) for r in records]
            state = batch_state(texts, self.dedup.config, self.dedup.with_sigs)
            survivors = survivors.append_column(TEXT_COL, pa.array(texts, pa.string()))
            origin = self.dedup.origin
            survivors = survivors.append_column(ORIGIN_COL, pa.array([origin(r) for r in records], pa.string()))
        keys = id_keys(survivors.column("id"))
        split_codes, split_names = _codes(splits)
        part = None
        if self.spill is not None and survivors.num_rows:
            part = str(part_path(self.spill, batch.seq))
            write_part(Path(part), survivors)
        return BatchOut(batch.seq, batch.origin, read_ok, read, tallies, None if part else survivors, survivors.num_rows,
                        keys, split_codes, split_names, totals, part, state, terms)

    def _survivors(self, records: list) -> tuple[pa.Table, list[str], dict[str, SizeTotals]]:
        schema = ARROW_SCHEMAS[self.kind]
        columns = KIND_COLUMNS[self.kind]
        rows, splits, raw_meta = [], [], []
        meta_json = _JsonCache()
        for r in records:
            row = r.model_dump(exclude={"kind", "meta"})
            meta = dict(r.meta)
            splits.append(str(meta.pop(_SPLIT_KEY, "train")))
            if self.dedup is not None:
                raw_meta.append(meta_json(r.meta))
            row["meta"] = meta_json(meta)
            rows.append({c: row.get(c) for c in columns})
        table = rows_to_table(rows, schema)
        sizer = TableSizer(schema)
        sizes = sizer.row_sizes(table)
        split_array = np.asarray(splits, dtype=object)
        totals = {name: sizer.totals(sizes.take(np.flatnonzero(split_array == name))) for name in dict.fromkeys(splits)}
        table = table.append_column(SPLIT_COL, pa.array(splits, pa.string()))
        if self.dedup is not None:
            table = table.append_column(RAW_META_COL, pa.array(raw_meta, pa.string()))
        return table, splits, totals


def _codes(splits: list[str]) -> tuple[np.ndarray, list[str]]:
    """uint8 codes of `splits` and the names they index, in first-seen order."""
    names = list(dict.fromkeys(splits))
    if len(names) > 255:
        raise ValueError("more than 255 split names in one batch")
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index[s] for s in splits), np.uint8, len(splits)), names


_SCALARS = (str, int, float, bool, type(None))


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """= table.to_pylist(), converted a column at a time (about twice as fast)."""
    names = table.column_names
    columns = [table.column(c).to_pylist() for c in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)] if names else [{} for _ in range(table.num_rows)]


class _JsonCache:
    """canonical_json of meta dicts, computed once per distinct dict whose values are all strings (most
    metas of a batch are equal: the dir label and little else). Other dicts are dumped every time."""

    def __init__(self) -> None:
        self.known: dict[tuple, str] = {}

    def __call__(self, meta: dict[str, Any]) -> str:
        items = tuple(meta.items())
        if not all(type(v) is str for _, v in items):  # 1, 1.0 and True are equal keys but dump differently
            return canonical_json(meta)
        text = self.known.get(items)
        if text is None:
            text = self.known[items] = canonical_json(meta)
        return text


class _MetaCache:
    """meta_of of a shard's meta cells, parsed once per distinct text when the object holds only
    scalars (so the dicts handed out, always fresh copies, share nothing mutable)."""

    def __init__(self) -> None:
        self.known: dict[str, dict[str, Any]] = {}

    def __call__(self, value: Any) -> dict[str, Any] | None:
        if not isinstance(value, str):
            return meta_of(value)
        parsed = self.known.get(value)
        if parsed is None:
            parsed = meta_of(value)
            if parsed is None or not all(isinstance(v, _SCALARS) for v in parsed.values()):
                return parsed
            self.known[value] = parsed
        return dict(parsed)


def _with_origin(row: dict[str, Any], origin: str, split: str, parse: Callable[[Any], dict[str, Any] | None] = meta_of) -> dict[str, Any]:
    """The row with its dir and split in meta (as `curation.inputs.load_dirs` marks records), added
    before validation so the record is built once. A meta that is not a JSON object is left for
    `from_row` to reject."""
    parsed = parse(row.get("meta"))
    if parsed is None:
        return row
    return {**row, "meta": {**parsed, ORIGIN_KEY: origin, _SPLIT_KEY: split}}
