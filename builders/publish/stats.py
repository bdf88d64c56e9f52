"""Statistics of a dataset dir for cards and reports: lengths per field and categories from `meta`.

Lengths are computed column-wise with pyarrow (no Python loop over records), so a card of a large
build stays cheap. Token counts are a tokenizer-free proxy (no tokenizer is ever downloaded): one
unit per CJK character, per Latin word, per number and per other symbol.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medmill.schemas.dataset_dir import shard_errors, split_files
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import meta_of

TOKEN_PROXY_RE = r"\p{Han}|[A-Za-z]+|[0-9]+|[^\s\p{Han}A-Za-z0-9]"
TOKEN_PROXY_HELP = "≈ tokens: 1 per CJK character, Latin word, number or symbol (tokenizer-free proxy)"

# meta keys worth a distribution, best first; other short-string keys with few values follow
PREFERRED_META_KEYS = (
    "relation",
    "relations",
    "category",
    "department",
    "strategy",
    "perturbation",
    "qtype",
    "question_type",
    "task",
    "template",
    "chapter",
    "section",
)
MAX_CATEGORY_VALUES = 60
MAX_META_ROWS = 50_000

# which text each field of a kind measures: (field name, column, roles or None for plain text)
KIND_FIELDS: dict[str, list[tuple[str, str, tuple[str, ...] | None]]] = {
    "sft": [("prompt", "messages", ("system", "user")), ("answer", "messages", ("assistant",))],
    "preference": [
        ("prompt", "prompt", ("system", "user", "assistant")),
        ("chosen", "chosen", ("assistant",)),
        ("rejected", "rejected", ("assistant",)),
    ],
    "pretrain": [("text", "text", None)],
}


@dataclass
class Distribution:
    """Summary of one length distribution (characters or token proxy), held as value counts: the
    distinct `values` (ascending) and how many records have each, so its memory follows the number of
    distinct lengths, not of records. Figures equal numpy's on the per-record array (tests/publish)."""

    values: np.ndarray
    counts: np.ndarray | None = None  # None: `values` are per-record figures (turned into counts here)

    def __post_init__(self) -> None:
        if self.counts is None:
            self.values, counts = np.unique(np.asarray(self.values), return_counts=True)
            self.counts = counts.astype(np.int64)
        self._cum = np.cumsum(self.counts)

    @property
    def count(self) -> int:
        return int(self._cum[-1]) if self.values.size else 0

    def _at(self, index: int) -> Any:
        """The value at `index` of the sorted per-record array."""
        return self.values[int(np.searchsorted(self._cum, index, side="right"))]

    def quantile(self, q: float) -> int:
        """= int(np.quantile(per-record values, q)): numpy's default (linear) method, step by step."""
        n = self.count
        if not n:
            return 0
        virtual = (n - 1) * np.float64(q)
        previous = np.floor(virtual)
        if virtual >= n - 1:
            return int(self._at(n - 1))
        a, b = self._at(int(previous)), self._at(int(previous) + 1)
        gamma = virtual - previous
        diff = b - a
        value = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
        return int(value)

    @property
    def mean(self) -> float:
        return float(int(np.dot(self.values.astype(np.int64), self.counts)) / self.count) if self.values.size else 0.0

    def summary(self) -> dict[str, float | int]:
        if not self.values.size:
            return {"min": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0.0}
        return {
            "min": int(self.values[0]),
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "max": int(self.values[-1]),
            "mean": round(self.mean, 1),
        }

    def histogram(self, bins: int = 30) -> tuple[list[int], list[float]]:
        """Counts and bin edges, clipped at the 99th percentile so one outlier does not flatten the plot."""
        if not self.values.size:
            return [], []
        lo = int(self.values[0])
        hi = max(self.quantile(0.99), lo + 1)
        counts, edges = np.histogram(np.clip(self.values, None, hi), bins=bins, range=(lo, hi), weights=self.counts)
        return [int(c) for c in counts], [float(e) for e in edges]


class ValueCounts:
    """Distinct values and their counts, added to batch by batch (memory: one entry per distinct value)."""

    def __init__(self, dtype: type = np.int32) -> None:
        self.values = np.zeros(0, dtype)
        self.counts = np.zeros(0, np.int64)

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        new, counts = np.unique(np.asarray(values).astype(self.values.dtype), return_counts=True)
        merged, at = np.unique(np.concatenate([self.values, new]), return_inverse=True)
        self.counts = np.bincount(at.reshape(-1), weights=np.concatenate([self.counts, counts]), minlength=len(merged)).astype(np.int64)
        self.values = merged

    def distribution(self) -> Distribution:
        return Distribution(self.values, self.counts)


@dataclass
class DatasetStats:
    kind: str
    records: dict[str, int] = field(default_factory=dict)
    chars: dict[str, Distribution] = field(default_factory=dict)
    tokens: dict[str, Distribution] = field(default_factory=dict)
    turns: Distribution | None = None
    categories: dict[str, Counter] = field(default_factory=dict)
    meta_rows_read: int = 0

    @property
    def total(self) -> int:
        return sum(self.records.values())


def token_proxy(text: pa.Array) -> np.ndarray:
    """Per-string count of TOKEN_PROXY_RE matches, computed on the UTF-8 bytes with numpy.

    Same result as `pc.count_substring_regex(text, TOKEN_PROXY_RE)` (a test checks it) but ~50x
    faster: every non-ASCII character and ASCII symbol is one unit, a run of letters or of digits is
    one unit, whitespace is none.
    """
    text = pc.fill_null(text, "").cast(pa.large_string())
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset : text.offset + n + 1]
    if text.buffers()[2] is None or offsets[-1] == offsets[0]:
        return np.zeros(n, dtype=np.int64)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[: offsets[-1]]
    cls = _BYTE_CLASS[data]
    starts = cls == _OTHER
    run = (cls == _LETTER) | (cls == _DIGIT)
    prev = np.empty_like(cls)
    prev[0] = _SPACE
    prev[1:] = cls[:-1]
    prev[offsets[:-1][offsets[:-1] < len(cls)]] = _SPACE  # a run never continues across strings
    starts |= run & (prev != cls)
    positions = np.flatnonzero(starts)  # (np.cumsum over bytes is ~15x slower)
    return np.searchsorted(positions, offsets[1:]) - np.searchsorted(positions, offsets[:-1])


_SPACE, _LETTER, _DIGIT, _OTHER = 0, 1, 2, 3
_BYTE_CLASS = np.full(256, _OTHER, dtype=np.uint8)  # ASCII symbols and UTF-8 lead bytes: one unit each
_BYTE_CLASS[0x80:0xC0] = _SPACE  # UTF-8 continuation bytes belong to the character already counted
_BYTE_CLASS[[ord(c) for c in "\t\n\f\r "]] = _SPACE
_BYTE_CLASS[ord("a") : ord("z") + 1] = _LETTER
_BYTE_CLASS[ord("A") : ord("Z") + 1] = _LETTER
_BYTE_CLASS[ord("0") : ord("9") + 1] = _DIGIT


def _column_lengths(table: pa.Table, column: str, fields: list[tuple[str, tuple[str, ...] | None]]):
    """{field: (chars, tokens)} per record for each field reading `column` (text, or some roles' messages)."""
    col = table.column(column).combine_chunks()
    if fields[0][1] is None:
        text = pc.fill_null(col, "")
        return {fields[0][0]: (pc.utf8_length(text).to_numpy(zero_copy_only=False), token_proxy(text))}
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(col)
    content = pc.fill_null(pc.struct_field(flat, "content"), "")
    role = pc.struct_field(flat, "role")
    chars = pc.utf8_length(content).to_numpy(zero_copy_only=False)
    toks = token_proxy(content)
    out = {}
    for name, roles in fields:
        keep = pc.is_in(role, value_set=pa.array(list(roles))).to_numpy(zero_copy_only=False)
        out[name] = (
            np.bincount(parents, weights=chars * keep, minlength=len(col)).astype(np.int64),
            np.bincount(parents, weights=toks * keep, minlength=len(col)).astype(np.int64),
        )
    return out


def _turn_counts(table: pa.Table) -> np.ndarray:
    col = table.column("messages").combine_chunks()
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(col)
    is_user = pc.equal(pc.struct_field(flat, "role"), "user").to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=is_user, minlength=len(col)).astype(np.int64)


def _short(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 40


def _meta_values(meta: Any) -> dict[str, list[str]]:
    """Short string values of `meta` by key: lists count each item, nested dicts one level deep
    (`input_meta.qtype` of preference pairs built from an sft dir)."""
    meta = meta_of(meta)
    if meta is None:
        return {}
    out: dict[str, list[str]] = {}
    for key, value in meta.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            name = key if sub is None else f"{key}.{sub}"
            if _short(v):
                out[name] = [v]
            elif isinstance(v, list) and v and all(_short(x) for x in v):
                out[name] = list(dict.fromkeys(v))
    return out


def _pick_categories(counters: dict[str, Counter], rows: int) -> dict[str, Counter]:
    """Keep keys that look categorical: several records per value, not ids or hashes."""
    good = {}
    for key, counter in counters.items():
        if key in ("id", "prompt_id", "prompt_version") or key.endswith(("_id", "hash", "_version")):
            continue
        distinct = len(counter)
        if distinct < 2 or sum(counter.values()) < max(2, rows // 2) or distinct > MAX_CATEGORY_VALUES:
            continue  # a constant, a rare key, or free text
        if distinct == sum(counter.values()) and distinct > 1:
            continue  # every value unique: an identifier, not a category
        good[key] = counter
    order = {k: i for i, k in enumerate(PREFERRED_META_KEYS)}
    return dict(sorted(good.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


STATS_BATCH_ROWS = 16_384  # token_proxy's per-byte arrays cost ~8x a batch's text bytes
LENGTH_DTYPE = np.int32  # lengths are counted as int32 values (the figures equal int64's: tests/publish)


class StatsCollector:
    """`DatasetStats` of shards handed in any order, each whole or in slices (the streaming writer hands
    each shard over as it writes it, so nothing is read back). Lengths are kept as value counts, so
    memory does not grow with the records; categories count the `meta` of the first MAX_META_ROWS rows
    in shard-file-name order (as `compute_stats` reads a dir), given by each table's `row_offset`: the
    rows of the dir that come before it in that order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fields = KIND_FIELDS.get(kind, [])
        self.chars = {name: ValueCounts(LENGTH_DTYPE) for name, _, _ in self.fields}
        self.tokens = {name: ValueCounts(LENGTH_DTYPE) for name, _, _ in self.fields}
        self.turns: ValueCounts | None = None
        self.records: dict[str, dict[str, int]] = {}  # shard name -> {split: rows}
        self.metas: list[tuple[int, list[Any]]] = []  # (row offset, meta cells) of the first MAX_META_ROWS rows

    def add(self, table: pa.Table, split: str, shard: str, row_offset: int) -> None:
        """Rows of the shard file `shard` of `split`, the first at `row_offset` of the dir in file-name order."""
        if not table.num_rows:
            return
        counts = self.records.setdefault(shard, {})
        counts[split] = counts.get(split, 0) + table.num_rows
        names = set(table.column_names)
        for at in range(0, table.num_rows, STATS_BATCH_ROWS):
            self._lengths(table.slice(at, STATS_BATCH_ROWS), names)
        if "meta" in names and row_offset < MAX_META_ROWS:
            self.metas.append((row_offset, table.column("meta").slice(0, MAX_META_ROWS - row_offset).to_pylist()))

    def _lengths(self, table: pa.Table, names: set[str]) -> None:
        for column in dict.fromkeys(c for _, c, _ in self.fields):
            if column in names:
                wanted = [(name, roles) for name, c, roles in self.fields if c == column]
                for name, (c, t) in _column_lengths(table, column, wanted).items():
                    self.chars[name].add(np.asarray(c))
                    self.tokens[name].add(np.asarray(t))
        if self.kind == "sft" and "messages" in names:
            self.turns = self.turns or ValueCounts(LENGTH_DTYPE)
            self.turns.add(_turn_counts(table))

    def result(self) -> DatasetStats:
        stats = DatasetStats(kind=self.kind)
        for shard in sorted(self.records):
            for split, n in self.records[shard].items():
                stats.records[split] = stats.records.get(split, 0) + n
        for name in self.chars:
            stats.chars[name] = self.chars[name].distribution()
            stats.tokens[name] = self.tokens[name].distribution()
        if self.turns is not None:
            stats.turns = self.turns.distribution()
        meta_counters: dict[str, Counter] = {}
        for offset, cells in sorted(self.metas, key=lambda m: m[0]):
            take = max(0, min(len(cells), MAX_META_ROWS - stats.meta_rows_read))
            if not take:
                continue
            if offset != stats.meta_rows_read:  # a shard's meta slice went missing: the counts would be short
                raise RuntimeError(f"card stats: meta of rows from {stats.meta_rows_read} missing (next slice at {offset})")
            _count_meta(cells[:take], meta_counters)
            stats.meta_rows_read += take
        stats.categories = _pick_categories(meta_counters, stats.meta_rows_read)
        return stats


def _count_meta(metas: list[Any], meta_counters: dict[str, Counter]) -> None:
    """Count the short values of `metas` by key. Each distinct meta text is parsed once (most rows share
    a few); taken in first-seen order, the counters get their keys and values in the order a row-by-row
    pass gives them."""
    distinct = Counter(metas) if all(m is None or isinstance(m, str) for m in metas) else [(m, 1) for m in metas]
    for meta, times in (distinct.items() if isinstance(distinct, Counter) else distinct):
        for k, values in _meta_values(meta).items():
            counter = meta_counters.setdefault(k, Counter())
            for v in values:
                counter[v] += times


def compute_stats(path: Path, kind: str) -> DatasetStats:
    """Read the shards of a dataset dir column-wise and summarise them."""
    collector = StatsCollector(kind)
    columns = sorted({c for _, c, _ in collector.fields} | {"meta"})
    try:
        shards = split_files(path, verify=False)  # the card's stats run on the dir being written, before its manifest
    except MedmillError:  # an empty build has no data/: stats of nothing
        return DatasetStats(kind=kind)
    offset = 0
    for split, files in shards.items():
        for f in files:
            with shard_errors(f):
                parquet = pq.ParquetFile(f)  # not pq.read_table: that imports pyarrow.dataset (~0.3 s)
                schema_names = set(parquet.schema_arrow.names)
                # in batches: the per-byte arrays of token_proxy cost ~8x the text bytes, so a whole 256 MB
                # shard at once would need GBs (the per-record results are the same either way)
                batches = parquet.iter_batches(batch_size=STATS_BATCH_ROWS, columns=[c for c in columns if c in schema_names])
                for batch in batches:
                    collector.add(pa.Table.from_batches([batch]), split, f.name, offset)
                    offset += batch.num_rows if "meta" in schema_names else 0  # rows without meta are not counted
    return collector.result()
