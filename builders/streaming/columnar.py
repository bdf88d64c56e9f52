"""The common case of a streamed batch, without record objects: a row whose fields the record model
takes as they are, and that no step drops, rewrites, flags or counts, leaves the batch as its input
arrow row (`take`), only `meta` rewritten (the dir label added, canonical JSON), as the record path
would write it. Every other row (a field the model could reject or fill in, a meta that is not a JSON
object, a row some step acts on) goes down the record path in `batch.py`, which gives exactly the
rejects, counters and records it always gave.

Building and validating a pydantic record, then dumping and re-serialising it, was ~60 % of a
streamed `filter` batch; here the checks are column-wise where they can be and per text otherwise
(the steps' own rules, through `keeps_unchanged`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medmill.builders.curation.inputs import _SPLIT_KEY, ORIGIN_KEY
from medmill.builders.curation.text import TextView
from medmill.schemas.dataset_dir import ARROW_SCHEMAS
from medmill.schemas.records import canonical_json, meta_of, turn_problems

KINDS = ("pretrain", "sft")  # kinds with a column-wise path (preference rows always take the record path)
_ROLES = frozenset(("system", "user", "assistant"))


@dataclass(frozen=True)
class MetaForm:
    """One distinct `meta` cell of a batch, as the record path turns it."""

    meta: dict[str, Any]  # parsed, dir label and split marker added (the record's meta)
    written: str  # canonical JSON without the split marker: the survivor's meta column
    carried: str  # canonical JSON of `meta`: what dedup carries to its reject rows


@dataclass
class Accepted:
    """Rows of a batch the record model takes as they are."""

    rows: np.ndarray  # int64 row numbers in the batch table, ascending
    view: TextView  # their texts, in `rows` order
    meta_codes: np.ndarray  # per row: index into `metas`
    metas: list[MetaForm]

    def take(self, keep: np.ndarray) -> Accepted:
        """The rows where `keep` (a bool per row) holds."""
        at = np.flatnonzero(keep)
        return Accepted(self.rows[at], self.view.take(at.tolist()), self.meta_codes[at], self.metas)


def _valid(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.is_valid(column).to_numpy(zero_copy_only=False)


def _not_blank(texts: list[Any]) -> np.ndarray:
    """= the models' content check (a str whose strip() is not empty); isspace() is False on ""."""
    return np.fromiter((type(t) is str and t != "" and not t.isspace() for t in texts), bool, len(texts))


def _meta_forms(cells: list[Any], origin: str, split: str) -> tuple[np.ndarray, list[MetaForm]]:
    """Per cell the index of its form (-1: not a JSON object, left for the record path to reject),
    each distinct cell parsed and dumped once (most cells of a batch are equal)."""
    index: dict[Any, int] = {}
    forms: list[MetaForm] = []
    codes = np.empty(len(cells), np.int64)
    for i, cell in enumerate(cells):
        code = index.get(cell)
        if code is None:
            parsed = meta_of(cell)
            if parsed is None:
                code = -1
            else:
                meta = {**parsed, ORIGIN_KEY: origin, _SPLIT_KEY: split}  # as batch._with_origin
                written = {k: v for k, v in meta.items() if k != _SPLIT_KEY}
                forms.append(MetaForm(meta, canonical_json(written), canonical_json(meta)))
                code = len(forms) - 1
            index[cell] = code
        codes[i] = code
    return codes, forms


def accepted_rows(table: pa.Table, kind: str, origin: str, split: str) -> Accepted | None:
    """The rows `record_class(kind).from_row` (after the dir label is put in meta) accepts and dumps
    back unchanged apart from meta; None when the batch has no column-wise path (another kind, or a
    table whose schema is not the dataset-dir schema: the record path then judges every row)."""
    schema = ARROW_SCHEMAS.get(kind)
    if kind not in KINDS or schema is None or not table.schema.equals(schema, check_metadata=False):
        return None
    n = table.num_rows
    ids = table.column("id")
    ok = _valid(ids) & pc.fill_null(pc.greater(pc.utf8_length(ids), 0), False).to_numpy(zero_copy_only=False)
    source = table.column("source")
    ok &= _valid(source)
    # a null builder or builder_version would come back as the model's default ("unknown", "0");
    # file, ref and group are already printable (arrow strings are valid UTF-8: no lone surrogates)
    for name in ("builder", "builder_version"):
        ok &= _valid(pc.struct_field(source, name))
    codes, metas = _meta_forms(table.column("meta").to_pylist(), origin, split)
    ok &= codes >= 0
    if kind == "pretrain":
        texts = table.column("text").to_pylist()
        ok &= _not_blank(texts)
        rows = np.flatnonzero(ok)
        turns = [[("text", texts[i])] for i in rows.tolist()]
    else:
        rows, turns = _sft_rows(table.column("messages"), ok)
    return Accepted(rows.astype(np.int64), TextView(kind, turns), codes[rows], metas) if n else None


def _sft_rows(messages: pa.ChunkedArray, ok: np.ndarray) -> tuple[np.ndarray, list[list[tuple[str, str]]]]:
    """Rows (where `ok`) whose messages the model takes: a non-empty list of messages with a known role
    and non-blank content, in an order `turn_problems` accepts; and their turns."""
    msgs = messages.combine_chunks() if isinstance(messages, pa.ChunkedArray) else messages
    counts = pc.fill_null(pc.list_value_length(msgs), 0).to_numpy(zero_copy_only=False)
    ok = ok & _valid(msgs) & (counts > 0)
    flat = pc.list_flatten(msgs)  # the messages of non-null lists, in order
    roles = pc.struct_field(flat, "role").to_pylist()
    contents = pc.struct_field(flat, "content").to_pylist()
    present = _valid(flat) & _not_blank(contents)
    ends = np.cumsum(counts).tolist()
    problems: dict[tuple[str, ...], bool] = {}
    rows, turns = [], []
    present_list = present.tolist()
    for i in np.flatnonzero(ok).tolist():
        start, end = ends[i] - int(counts[i]), ends[i]
        row_roles = tuple(roles[start:end])
        if not all(present_list[start:end]):
            continue
        fine = problems.get(row_roles)
        if fine is None:
            fine = problems[row_roles] = all(r in _ROLES for r in row_roles) and not turn_problems(
                [_Turn(r) for r in row_roles], last="assistant")
        if fine:
            rows.append(i)
            turns.append(list(zip(row_roles, contents[start:end], strict=True)))
    return np.array(rows, np.int64), turns


@dataclass(frozen=True)
class _Turn:
    role: str


def settle(accepted: Accepted, steps: list) -> tuple[Accepted, list[float]]:
    """The accepted rows every step keeps as they are (asking each step only about the rows the steps
    before it kept), and per step the seconds its checks took."""
    seconds = []
    for step in steps:
        t0 = time.perf_counter()
        if len(accepted.rows):
            accepted = accepted.take(np.asarray(step.keeps_unchanged(accepted.view), bool))
        seconds.append(time.perf_counter() - t0)
    return accepted, seconds


def kept_table(table: pa.Table, kind: str, accepted: Accepted) -> pa.Table:
    """The accepted rows as the record path writes them: the input row, meta rewritten."""
    schema = ARROW_SCHEMAS[kind]
    out = table.select(schema.names).take(pa.array(accepted.rows, pa.int64()))
    written = [form.written for form in accepted.metas]
    meta = pa.array([written[c] for c in accepted.meta_codes.tolist()], pa.string())
    out = out.set_column(schema.get_field_index("meta"), "meta", meta)
    return pa.Table.from_arrays(out.columns, schema=schema)
