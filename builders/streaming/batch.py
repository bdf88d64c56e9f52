"""The work done on one input batch, in a worker process: rows -> records (bad rows -> read rejects)
-> the map steps (validate, quality, PII, safety, decontaminate) -> surviving rows as an arrow table,
their size figures for the writer and, when dedup follows, their compact dedup state.

Rows the record model takes as they are and no step acts on skip the record objects altogether
(`columnar.py`: their input arrow rows are the survivors); the rest take the record path below.

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
import pyarrow.compute as pc
from pydantic import ValidationError

from medmill.builders.core.steps import Step
from medmill.builders.curation.dedup import DedupConfig
from medmill.builders.curation.dedup_state import BatchState, batch_state
from medmill.builders.curation.inputs import _SPLIT_KEY, ORIGIN_KEY, origin_of
from medmill.builders.curation.record_dedup import meta_terms
from medmill.builders.curation.stages import (
    DecontaminateStep,
    PIIStep,
    QualityStep,
    SafetyStep,
    ValidateStep,
    builder_origin,
)
from medmill.builders.curation.text import record_text
from medmill.builders.streaming.arrow_rows import rows_to_table
from medmill.builders.streaming.columnar import Accepted, accepted_rows, kept_table, settle
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
    survivors: pa.Table | None  # kind columns (final meta) + SPLIT_COL + size columns [+ RAW_META_COL, TEXT_COL, ORIGIN_COL]; None: in `part`
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
    records, _positions, tallies = _record_steps(steps, records)
    return records, tallies


def _record_steps(steps: list, records: list) -> tuple[list, list[int], list[StepTally]]:
    """run_record_steps, and each survivor's index in `records`."""
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
    return records, positions, tallies


def _columnar_steps(steps: list) -> bool:
    """Whether every step can tell, from a row's texts, that it keeps the row as it is (curation's own
    steps; a subclass may act differently, so only the classes themselves)."""
    return all(type(step) in COLUMNAR_STEPS for step in steps)


COLUMNAR_STEPS = (ValidateStep, QualityStep, PIIStep, SafetyStep, DecontaminateStep)


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

    def _accepted(self, batch: InputBatch, steps: list) -> tuple[Accepted | None, list[float]]:
        """The rows that go through as they are (columnar.py), and per step the seconds spent on them."""
        if not _columnar_steps(steps):
            return None, [0.0] * len(steps)
        if self.dedup is not None and self.dedup.origin not in (builder_origin, origin_of):
            return None, [0.0] * len(steps)
        accepted = accepted_rows(batch.table, self.kind, batch.origin, batch.split)
        if accepted is None:
            return None, [0.0] * len(steps)
        return settle(accepted, steps)

    def _run(self, batch: InputBatch) -> BatchOut:
        steps = [*self.steps, *self.late_steps]
        fast, fast_seconds = self._accepted(batch, steps)
        n_rows = batch.table.num_rows
        fast_rows = fast.rows if fast is not None else np.zeros(0, np.int64)
        if len(fast_rows):
            slow_rows = np.setdiff1d(np.arange(n_rows, dtype=np.int64), fast_rows, assume_unique=True)
            slow_table = batch.table.take(pa.array(slow_rows, pa.int64()))
        else:
            slow_rows, slow_table = np.arange(n_rows, dtype=np.int64), batch.table
        cls = record_class(self.kind)
        read = StepTally("read")
        records, record_rows = [], []
        rejects: list[RejectRow] = []
        parse = _MetaCache()
        for i, row in zip(slow_rows.tolist(), _rows(slow_table), strict=True):
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
            record_rows.append(i)
        _tally_rejects(read, rejects)
        read_ok = len(records) + len(fast_rows)
        records, positions, tallies = _record_steps(steps, records)
        if len(fast_rows):
            # each read record's index among the batch's read records (what the ordinals count)
            is_read = np.zeros(n_rows, bool)
            is_read[fast_rows] = True
            is_read[record_rows] = True
            read_index = (np.cumsum(is_read) - 1).tolist()
            for tally, secs in zip(tallies, fast_seconds, strict=True):
                tally.ordinals = [read_index[record_rows[p]] for p in tally.ordinals]
                tally.n_in += len(fast_rows)
                tally.n_out += len(fast_rows)
                tally.seconds += secs
        survivor_rows = [record_rows[p] for p in positions]
        survivors, splits, totals, order = self._survivors(records, survivor_rows, batch, fast)
        state = None
        terms: frozenset[str] = frozenset()
        if self.dedup is not None:
            texts, origins = self._compared(records, fast, order, batch)
            if self.dedup.config.fact_guard:  # as the in-memory dedup adds them (curation/record_dedup.py)
                metas = [_Meta(fast.metas[c].meta) for c in np.unique(fast.meta_codes).tolist()] if fast is not None else []
                terms = meta_terms(records) | meta_terms(metas)
            state = batch_state(texts, self.dedup.config, self.dedup.with_sigs)
            survivors = survivors.append_column(TEXT_COL, pa.array(texts, pa.string()))
            survivors = survivors.append_column(ORIGIN_COL, pa.array(origins, pa.string()))
        keys = id_keys(survivors.column("id"))
        split_codes, split_names = _codes(splits)
        part = None
        if self.spill is not None and survivors.num_rows:
            part = str(part_path(self.spill, batch.seq))
            write_part(Path(part), survivors)
        return BatchOut(batch.seq, batch.origin, read_ok, read, tallies, None if part else survivors, survivors.num_rows,
                        keys, split_codes, split_names, totals, part, state, terms)

    def _survivors(self, records: list, record_rows: list[int], batch: InputBatch, fast: Accepted | None
                   ) -> tuple[pa.Table, list[str], dict[str, SizeTotals], np.ndarray | None]:
        """The survivors in batch order: the record path's `records` (from rows `record_rows`) and the
        rows taken as they are (`fast`); `order` puts [records..., fast rows...] in batch order (None:
        only records)."""
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
        order = None
        if fast is not None and len(fast.rows):
            # as the record path: a record's split is the split marker _with_origin put in its meta
            splits += [str(m.meta[_SPLIT_KEY]) for m in (fast.metas[c] for c in fast.meta_codes.tolist())]
            if self.dedup is not None:
                carried = [m.carried for m in fast.metas]
                raw_meta += [carried[c] for c in fast.meta_codes.tolist()]
            order = np.argsort(np.concatenate([np.asarray(record_rows, np.int64), fast.rows]), kind="stable")
            table = pa.concat_tables([table, kept_table(batch.table, self.kind, fast)]).take(pa.array(order))
            table = table.combine_chunks()
            splits = [splits[i] for i in order.tolist()]
            raw_meta = [raw_meta[i] for i in order.tolist()] if raw_meta else raw_meta
        sizer = TableSizer(schema)
        sizes = sizer.row_sizes(table)
        split_array = np.asarray(splits, dtype=object)
        totals = {name: sizer.totals(sizes.take(np.flatnonzero(split_array == name))) for name in dict.fromkeys(splits)}
        table = table.append_column(SPLIT_COL, pa.array(splits, pa.string()))
        for name, column in sizer.as_columns(sizes).items():  # the writer reads these, not the rows, for rows it drops
            table = table.append_column(name, column)
        if self.dedup is not None:
            table = table.append_column(RAW_META_COL, pa.array(raw_meta, pa.string()))
        return table, splits, totals, order

    def _compared(self, records: list, fast: Accepted | None, order: np.ndarray | None, batch: InputBatch
                  ) -> tuple[list[str], list[str]]:
        """Per survivor (batch order): the text dedup compares and the origin its rejects name."""
        assert self.dedup is not None
        fields, origin = self.dedup.fields, self.dedup.origin
        texts = [record_text(r, fields) for r in records]
        origins = [origin(r) for r in records]
        if order is None or fast is None:
            return texts, origins
        texts += [fast.view.text(i, fields) for i in range(len(fast.rows))]
        if origin is origin_of:  # the dir label _with_origin put in meta
            origins += [str(m.meta.get(ORIGIN_KEY, "")) for m in (fast.metas[c] for c in fast.meta_codes.tolist())]
        else:  # builder_origin: accepted rows have a builder
            builders = pc.struct_field(batch.table.column("source"), "builder").take(pa.array(fast.rows)).to_pylist()
            origins += [b or "" for b in builders]
        return [texts[i] for i in order.tolist()], [origins[i] for i in order.tolist()]


@dataclass(frozen=True)
class _Meta:
    """What `meta_terms` reads of a record."""

    meta: dict[str, Any]


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
