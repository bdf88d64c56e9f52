"""The global dedup step of a streamed run: decide from the compact state, then turn the decision into
the reject rows, cluster report and stats `curation.record_dedup.dedup_records` gives, reading back
from the spill only the rows that were removed and the kept rows they name. Reading back and writing
the JSON lines run in forked workers (`fork_imap`: runs of spill parts, blocks of clusters), the
parent writes their text in order."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medmill.builders.curation.dedup import Decision, DedupConfig, decide, decision_workers
from medmill.builders.curation.dedup_pairs import Sketches, fork_imap, sorted_unique
from medmill.builders.curation.dedup_state import BandFiles, DedupState
from medmill.builders.curation.index import DedupIndex
from medmill.builders.curation.record_dedup import PREVIEW
from medmill.builders.streaming.batch import ORIGIN_COL, RAW_META_COL, TEXT_COL, DedupWork
from medmill.builders.streaming.dedup_child import on_this_machine, run_in_child, wants_child
from medmill.builders.streaming.spill import Spill
from medmill.schemas import KIND_COLUMNS, RejectRow


@dataclass
class StreamDedupResult:
    decision: Decision
    stats: dict[str, Any]
    counters: Counter
    clusters_file: Path
    index_rows: dict[str, Any] = field(default_factory=dict)
    by_reason: Counter = field(default_factory=Counter)


def _fetch_texts(spill: Spill):
    def fetch(positions: np.ndarray) -> pa.Array:
        return spill.take(positions, [TEXT_COL]).column(0).combine_chunks()

    return fetch


class _Named:
    """Id, text (first PREVIEW characters) and origin of the spill rows a reject or a cluster names
    (`positions`, ascending), and of index texts."""

    def __init__(self, positions: np.ndarray, table: pa.Table, index: DedupIndex | None, n_ref: int) -> None:
        self.positions, self.index, self.n_ref = positions, index, n_ref
        self.ids, self.texts, self.origins = (table.column(c).to_pylist() for c in ("id", TEXT_COL, ORIGIN_COL))

    def inputs(self, positions: np.ndarray) -> tuple[list, list, list]:
        """(ids, texts, origins) of spill rows."""
        at = np.searchsorted(self.positions, positions)
        if len(at) and (int(at.max()) >= len(self.positions) or not (self.positions[at] == positions).all()):
            raise RuntimeError("a dedup reject names a record not read")
        return tuple([values[k] for k in at.tolist()] for values in (self.ids, self.texts, self.origins))

    def __call__(self, targets: np.ndarray) -> list[tuple[str, str, str]]:
        """(id, text, origin) of decision positions: index texts first, then spill rows."""
        ids, texts, origins = self.inputs(targets[targets >= self.n_ref] - self.n_ref)
        out, k = [], 0
        for t in targets.tolist():
            if t < self.n_ref:
                assert self.index is not None
                out.append((self.index.ids[t], self.index.reference.texts[t], self.index.origins[t]))
            else:
                out.append((ids[k], texts[k], origins[k]))
                k += 1
        return out


PER_JOB = 20_000  # rows read back (or rejects, or cluster members) per forked job


def _named(spill: Spill, wanted: np.ndarray, index: DedupIndex | None, n_ref: int, workers: int) -> _Named:
    """The id, text preview and origin of every `wanted` spill row, parts read by forked workers."""
    columns = ["id", TEXT_COL, ORIGIN_COL]

    def read(parts: tuple[int, int]) -> pa.Table:
        pieces = [t.select(columns) for _, t in spill.scan(wanted, columns, parts)]
        pieces = [t.set_column(1, TEXT_COL, pc.utf8_slice_codeunits(t.column(TEXT_COL), 0, PREVIEW)) for t in pieces]
        return pa.concat_tables(pieces) if pieces else None

    got = [t for t in fork_imap(read, spill.part_ranges(wanted, PER_JOB), workers) if t is not None]
    table = pa.concat_tables(got) if got else pa.table({c: pa.array([], pa.string()) for c in columns})
    if table.num_rows != len(wanted):
        raise RuntimeError("dedup could not read back every record it names")
    return _Named(wanted, table, index, n_ref)


def run_dedup(
    spill: Spill,
    state: DedupState,
    work: DedupWork,
    kind: str,
    index: DedupIndex | None,
    rejects_file: Path,
    clusters_file: Path,
) -> StreamDedupResult:
    """The global step over the stream's state: here, or in a fresh process when this is a Ray driver
    (which must not fork the step's helpers: `dedup_child.py`); the same result and files either way."""
    exact, units, keys = state.arrays()
    job: dict[str, Any] = {"spill": spill, "exact": exact, "units": units, "keys": keys, "sketch": state.take_sketch(),
                           "config": work.config, "fields": work.fields, "kind": kind, "index": index,
                           "rejects_file": rejects_file, "clusters_file": clusters_file}
    del exact, units, keys
    if wants_child(work.config, len(spill)):
        job["config"] = on_this_machine(work.config)
        result = run_in_child(job, spill.path.parent / "dedup-child")
    else:
        result = global_step(**job)
    if index is not None:
        result.index_rows = _index_rows(spill, state, result.decision)
    return result


def global_step(
    spill: Spill,
    exact: np.ndarray,
    units: np.ndarray,
    keys: np.ndarray | BandFiles,
    sketch: Sketches | None,
    config: DedupConfig,
    fields: list[str],
    kind: str,
    index: DedupIndex | None,
    rejects_file: Path,
    clusters_file: Path,
) -> StreamDedupResult:
    """Decide, then write the reject rows and the cluster report (every part that forks helpers);
    `index_rows` are the caller's."""
    reference = index.reference if index is not None and len(index) else None
    decision = decide(exact, units, keys, config, _fetch_texts(spill), reference, sketch, spill.path.parent)
    del exact, units, keys, sketch
    n_ref = len(index) if index is not None else 0
    removed = np.flatnonzero(~decision.keep)
    targets = decision.dup_of[removed]
    workers = decision_workers(config, len(spill))
    # the rows rejects and clusters name: every removed row and every kept row one names
    named = _named(spill, sorted_unique(np.concatenate([removed, targets[targets >= n_ref] - n_ref])), index, n_ref, workers)
    columns = [*KIND_COLUMNS[kind], RAW_META_COL, ORIGIN_COL]

    def rejects(parts: tuple[int, int]) -> tuple[str, Counter]:
        """The reject rows of the removed rows in spill parts k0..k1-1, in order."""
        lines, by_reason = [], Counter()
        for pos, table in spill.scan(removed, columns, parts):
            for row, (kept_id, _, kept_origin), i in zip(table.to_pylist(), named(decision.dup_of[pos]), pos.tolist(), strict=True):
                sim = float(decision.similarity[i])
                reason = "exact_duplicate" if decision.exact[i] else "near_duplicate"
                where = f" in {kept_origin}" if kept_origin != row[ORIGIN_COL] else ""
                raw = {k: row[k] for k in KIND_COLUMNS[kind]} | {"meta": row[RAW_META_COL]}
                reject = RejectRow(stage="dedup", reason=reason, message=f"duplicate of {kept_id}{where} (similarity {sim:.3f})",
                                   source=row["source"], raw=raw)
                lines.append(reject.to_json() + "\n")
                by_reason[f"dedup/{reason}"] += 1
        return "".join(lines), by_reason

    # clusters: by kept record (position order), members in input order
    order = np.lexsort((removed, targets))
    sorted_targets = targets[order]
    group_starts = np.flatnonzero(np.r_[True, sorted_targets[1:] != sorted_targets[:-1]]) if len(order) else np.zeros(0, np.int64)
    blocks, c = [], 0
    while c < len(order):
        at = int(np.searchsorted(group_starts, c + PER_JOB))  # blocks end where a cluster starts
        end = int(group_starts[at]) if at < len(group_starts) else len(order)
        blocks.append((c, end))
        c = end

    def clusters(span: tuple[int, int]) -> tuple[str, int]:
        block = order[span[0] : span[1]]
        pos, tgt = removed[block], targets[block]
        ids, texts, origins = named.inputs(pos)
        uniq, first = np.unique(tgt, return_index=True)
        bounds = np.append(first, len(tgt))
        lines = []
        for k, (t, (kept_id, kept_text, kept_origin)) in enumerate(zip(uniq.tolist(), named(uniq), strict=True)):
            group = []
            for j in range(bounds[k], bounds[k + 1]):
                i = int(pos[j])
                group.append({"id": ids[j], "text": texts[j][:PREVIEW], "similarity": round(float(decision.similarity[i]), 4),
                              "exact": bool(decision.exact[i]), "origin": origins[j]})
            cluster = {"kept_id": kept_id, "kept_text": kept_text[:PREVIEW], "kept_origin": kept_origin,
                       "in_index": t < n_ref, "members": group}
            lines.append(json.dumps(cluster, ensure_ascii=False) + "\n")
        return "".join(lines), len(uniq)

    jobs = [("rejects", r) for r in spill.part_ranges(removed, PER_JOB)] + [("clusters", b) for b in blocks]
    by_reason: Counter = Counter()
    n_clusters = 0
    with open(rejects_file, "w", encoding="utf-8") as out_rejects, open(clusters_file, "w", encoding="utf-8") as out_clusters:
        for (what, _), (text, count) in zip(jobs, fork_imap(lambda job: rejects(job[1]) if job[0] == "rejects" else clusters(job[1]), jobs, workers), strict=True):
            if what == "rejects":
                out_rejects.write(text)
                by_reason.update(count)
            else:
                out_clusters.write(text)
                n_clusters += count

    n_exact = int(decision.exact.sum())
    near = int((~decision.keep & ~decision.exact).sum())
    examples = decision.stats.get("fact_guarded_examples", [])
    guarded_examples = []
    if examples:
        others = spill.take(np.array([ex["other"] for ex in examples], dtype=np.int64), ["id", TEXT_COL]).to_pylist()
        kept = _describe_any(spill, index, n_ref, np.array([ex["kept"] for ex in examples], dtype=np.int64))
        for ex, other, (kept_id, kept_text, _) in zip(examples, others, kept, strict=True):
            guarded_examples.append({"kept_id": kept_id, "kept_text": kept_text[:PREVIEW], "other_id": other["id"],
                                     "other_text": other[TEXT_COL][:PREVIEW], "similarity": ex["similarity"],
                                     "difference": ex["difference"]})
    stats = {
        **decision.stats,
        "fact_guarded_examples": guarded_examples,
        "fields": fields,
        "index_records": n_ref,
        "clusters": n_clusters,
        "removed_exact": n_exact,
        "removed_near": near,
        "representative": "first_seen",
    }
    return StreamDedupResult(decision, stats, Counter({"exact": n_exact, "near": near}), clusters_file, by_reason=by_reason)


def _index_rows(spill: Spill, state: DedupState, decision: Decision) -> dict[str, Any]:
    """What the dedup index adds of this run: the kept records' ids, origins, texts, keys, signatures."""
    kept_pos = np.flatnonzero(decision.keep)
    got = spill.take(kept_pos, ["id", ORIGIN_COL, TEXT_COL])
    return {
        "ids": got.column("id").to_pylist(),
        "origins": got.column(ORIGIN_COL).to_pylist(),
        "texts": got.column(TEXT_COL).to_pylist(),
        "exact": decision.keys[decision.keep],
        "sigs": state.signatures(kept_pos),
    }


def _describe_any(spill: Spill, index: DedupIndex | None, n_ref: int, targets: np.ndarray) -> list[tuple[str, str, str]]:
    """(id, text, origin) of any decision positions (a few: the fact guard's examples)."""
    inputs = targets[targets >= n_ref] - n_ref
    got = spill.take(inputs, ["id", TEXT_COL, ORIGIN_COL]).to_pylist() if len(inputs) else []
    it = iter(got)
    out = []
    for t in targets.tolist():
        if t < n_ref:
            assert index is not None
            out.append((index.ids[t], index.reference.texts[t], index.origins[t]))
        else:
            row = next(it)
            out.append((row["id"], row[TEXT_COL], row[ORIGIN_COL]))
    return out
