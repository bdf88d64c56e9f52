"""Deduplicate records (not just texts): pick each kind's compared text, run `find_duplicates`, and
turn its answer into kept records, reject rows naming the kept id and similarity, a cluster report
(`clusters.jsonl` rows) and the index rows to add."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medmill.builders.curation.dedup import DedupConfig, find_duplicates
from medmill.builders.curation.index import DedupIndex
from medmill.builders.curation.text import record_text
from medmill.schemas import Record, RejectRow

PREVIEW = 300


@dataclass
class RecordDedup:
    kept: list[Record]
    rejects: list[RejectRow]
    clusters: list[dict[str, Any]]
    stats: dict[str, Any]
    counters: Counter
    index_rows: dict[str, Any] = field(default_factory=dict)

    def add_to(self, index: DedupIndex) -> str | None:
        return index.append(**self.index_rows)


META_TERM_KEYS = ("entity", "entities", "values", "question_values")  # what KG builders put in meta
LONGEST_TERM = 30


def meta_terms(records: list[Record]) -> frozenset[str]:
    """Facts records carry in `meta` (KG entity names and values): protected terms for the fact
    guard, so `medmill dedup` of a KG dataset dir knows the entities its build read."""
    terms: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str):
            if 2 <= len(value) <= LONGEST_TERM:
                terms.add(value)
        elif isinstance(value, list):
            for v in value:
                add(v)
        elif isinstance(value, dict):
            for v in value.values():
                add(v)

    for r in records:
        meta = r.meta if isinstance(r.meta, dict) else {}
        for key in META_TERM_KEYS:
            add(meta.get(key))
    return frozenset(terms)


def dedup_records(
    records: list[Record],
    fields: list[str],
    config: DedupConfig,
    origin_of: Callable[[Record], str],
    index: DedupIndex | None = None,
) -> RecordDedup:
    texts = [record_text(r, fields) for r in records]
    if config.fact_guard:
        config = replace(config, protected_terms=config.protected_terms | meta_terms(records))
    result = find_duplicates(texts, config, index.reference if index else None)
    n_ref = len(index) if index else 0

    def describe(pos: int) -> tuple[str, str, str]:
        if pos < n_ref:
            assert index is not None
            return index.ids[pos], index.reference.texts[pos], index.origins[pos]
        r = records[pos - n_ref]
        return r.id, texts[pos - n_ref], origin_of(r)

    kept: list[Record] = []
    rejects: list[RejectRow] = []
    members: dict[int, list[dict[str, Any]]] = {}
    for i, r in enumerate(records):
        target = int(result.dup_of[i])
        if target < 0:
            kept.append(r)
            continue
        kept_id, _, kept_origin = describe(target)
        sim = float(result.similarity[i])
        reason = "exact_duplicate" if result.exact[i] else "near_duplicate"
        where = f" in {kept_origin}" if kept_origin != origin_of(r) else ""
        rejects.append(
            RejectRow(
                stage="dedup",
                reason=reason,
                message=f"duplicate of {kept_id}{where} (similarity {sim:.3f})",
                source=r.source,
                raw=r.to_row(),
            )
        )
        members.setdefault(target, []).append(
            {"id": r.id, "text": texts[i][:PREVIEW], "similarity": round(sim, 4), "exact": bool(result.exact[i]), "origin": origin_of(r)}
        )
    clusters = []
    for target in sorted(members):
        kept_id, kept_text, kept_origin = describe(target)
        clusters.append(
            {"kept_id": kept_id, "kept_text": kept_text[:PREVIEW], "kept_origin": kept_origin, "in_index": target < n_ref, "members": members[target]}
        )
    keep = result.keep
    idx = np.flatnonzero(keep)
    index_rows = {
        "ids": [records[i].id for i in idx],
        "origins": [origin_of(records[i]) for i in idx],
        "texts": [texts[i] for i in idx],
        "exact": result.keys[keep],
        "sigs": result.sigs[keep],
    }
    near = int((~keep & ~result.exact).sum())
    guarded_examples = []
    for ex in result.stats.get("fact_guarded_examples", []):
        kept_id, kept_text, _ = describe(ex["kept"])
        guarded_examples.append({"kept_id": kept_id, "kept_text": kept_text[:PREVIEW], "other_id": records[ex["other"]].id,
                                 "other_text": texts[ex["other"]][:PREVIEW], "similarity": ex["similarity"], "difference": ex["difference"]})
    stats = {
        **result.stats,
        "fact_guarded_examples": guarded_examples,
        "fields": fields,
        "index_records": n_ref,
        "clusters": len(clusters),
        "removed_exact": int(result.exact.sum()),
        "removed_near": near,
        "representative": "first_seen",  # index, then inputs in order; a removed record names its most similar kept one
    }
    counters = Counter({"exact": int(result.exact.sum()), "near": near})
    return RecordDedup(kept, rejects, clusters, stats, counters, index_rows)
