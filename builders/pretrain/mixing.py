"""Mixtures of pretraining dirs by token share: `domain=0.3,general=0.7`.

The plan: each source i has A_i tokens and asks for share w_i of the total T. Without a requested
total, T is the largest total no source must repeat more than `max_epochs` times for:
T = min_i(A_i * max_epochs / w_i); so the scarcest source is used fully (or up to the epoch cap) and
the others are downsampled. With a total, a source that would need more than `max_epochs` epochs
is an error naming it.

Selection per source: whole epochs of every document, then documents in seeded-rank order filling
the rest of the target (documents that would overshoot are skipped, so the shortfall is
below the smallest unpicked document). The same seed gives the same mixture.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medmill.schemas import PretrainRecord, Source
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import stable_id
from medmill.schemas.seeded import seeded_rank

TOKEN_BATCH = 512  # texts per call of the token counter

if TYPE_CHECKING:
    from medmill.builders.pretrain.config import MixConfig


@dataclass
class MixEntry:
    name: str  # the path as given
    weight: float


def parse_mix(spec: str) -> list[MixEntry]:
    """'out/domain=0.3,out/general=0.7' -> entries with weights normalised to sum 1."""
    entries: list[MixEntry] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        if not sep or not name.strip():
            raise MedmillError(f"--mix {spec!r}: expected DIR=SHARE pairs, e.g. out/domain=0.3,out/general=0.7")
        try:
            weight = float(value)
        except ValueError:
            raise MedmillError(f"--mix: share {value!r} of {name} is not a number") from None
        if not weight > 0 or math.isinf(weight):
            raise MedmillError(f"--mix: share of {name} must be above 0, got {value}")
        if any(e.name == name.strip() for e in entries):
            raise MedmillError(f"--mix: {name} is given twice")
        entries.append(MixEntry(name.strip(), weight))
    if len(entries) < 2:
        raise MedmillError(f"--mix {spec!r}: give at least two sources")
    total = sum(e.weight for e in entries)
    return [MixEntry(e.name, e.weight / total) for e in entries]


@dataclass
class SourcePlan:
    name: str
    share: float
    docs_available: int
    tokens_available: int
    tokens_target: int
    docs_selected: int = 0
    tokens_selected: int = 0
    selection: list[tuple[int, int]] = field(default_factory=list)  # (document index, epoch)

    @property
    def epochs(self) -> float:
        return self.tokens_selected / self.tokens_available if self.tokens_available else 0.0

    def report(self, total_selected: int) -> dict[str, Any]:
        return {
            "share_requested": round(self.share, 6),
            "share_reached": round(self.tokens_selected / total_selected, 6) if total_selected else 0.0,
            "documents_before": self.docs_available,
            "tokens_before": self.tokens_available,
            "documents_after": self.docs_selected,
            "tokens_after": self.tokens_selected,
            "tokens_target": self.tokens_target,
            "epochs": round(self.epochs, 4),
        }


def plan_targets(available: dict[str, int], shares: dict[str, float], max_epochs: float, total: int | None) -> dict[str, int]:
    """Target tokens per source (see the module docstring)."""
    empty = [n for n, a in available.items() if a <= 0]
    if empty:
        raise MedmillError(f"--mix: {', '.join(empty)} holds no tokens")
    if total is None:
        total_f = min(available[n] * max_epochs / shares[n] for n in available)
    else:
        total_f = float(total)
        for n in available:
            need = shares[n] * total_f / available[n]
            if need > max_epochs + 1e-9:
                raise MedmillError(
                    f"--mix: {n} has {available[n]:,} tokens; its share of --mix-tokens {total:,} needs "
                    f"{need:.2f} epochs, above --max-epochs {max_epochs:g}"
                )
    return {n: round(shares[n] * total_f) for n in available}


def select_documents(
    tokens: list[int], target: int, seed: int, name: str, keys: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """(document index, epoch) picks whose tokens sum to just under or at `target`.

    Documents are drawn in the order of their seeded rank (schemas.seeded) under their `keys`
    (record ids; default: positions), so adding documents to a source never reorders the others."""
    total = sum(tokens)
    if total <= 0 or target <= 0:
        return []
    full = target // total
    picks = [(i, e) for e in range(full) for i in range(len(tokens))]
    remainder = target - full * total
    names = list(keys) if keys is not None else [str(i) for i in range(len(tokens))]
    order = sorted(range(len(tokens)), key=lambda i: seeded_rank(seed, f"{name}\x00{names[i]}"))
    got = 0
    for i in order:
        if remainder - got <= 0:
            break
        if got + tokens[i] <= remainder:
            picks.append((i, full))
            got += tokens[i]
    return picks


def plan_mix(
    tokens_by_source: dict[str, list[int]],
    shares: dict[str, float],
    *,
    max_epochs: float,
    seed: int,
    total: int | None = None,
    keys: dict[str, Sequence[str]] | None = None,
) -> list[SourcePlan]:
    """Targets and document picks for every source, in the order given."""
    available = {n: sum(t) for n, t in tokens_by_source.items()}
    targets = plan_targets(available, shares, max_epochs, total)
    plans = []
    for name, tokens in tokens_by_source.items():
        plan = SourcePlan(name, shares[name], len(tokens), available[name], targets[name])
        plan.selection = select_documents(tokens, targets[name], seed, name, (keys or {}).get(name))
        plan.docs_selected = len(plan.selection)
        plan.tokens_selected = sum(tokens[i] for i, _ in plan.selection)
        plans.append(plan)
    return plans


def mix_figures(cfg: MixConfig, plans: list[SourcePlan], method: str, exact: bool) -> tuple[Counter, dict[str, Any]]:
    """The counters and the `mix` stats table of a mixture (what `MixBuilder.generate` notes)."""
    counters: Counter = Counter()
    for plan in plans:
        counters[f"mix.{plan.name}.tokens_before"] += plan.tokens_available
        counters[f"mix.{plan.name}.tokens_after"] += plan.tokens_selected
        counters[f"mix.{plan.name}.documents_before"] += plan.docs_available
        counters[f"mix.{plan.name}.documents_after"] += plan.docs_selected
    total = sum(p.tokens_selected for p in plans)
    counters["mix.tokens_total"] += total
    stats = {
        "token_method": method,
        "estimate": not exact,
        "max_epochs": cfg.max_epochs,
        "total_tokens_requested": cfg.total_tokens,
        "tokens_total": total,
        "seed": cfg.seed,
        "sources": {p.name: p.report(total) for p in plans},
    }
    return counters, stats


def mixed_record(row: dict[str, Any], tokens: int, source: str, epoch: int) -> PretrainRecord:
    """A selected row; a repeat (epoch >= 1) gets its own id, and every copy keeps the original's
    split group so no document is in train and validation at once."""
    meta = json.loads(row["meta"]) if isinstance(row.get("meta"), str) and row["meta"] else dict(row.get("meta") or {})
    src = {k: v for k, v in (row.get("source") or {}).items() if v is not None}
    src["group"] = src.get("group") or row["id"]
    meta.update({"mix_source": source, "epoch": epoch, "tokens": tokens})
    rid = row["id"] if epoch == 0 else stable_id("pretrain", [row["text"], epoch])
    return PretrainRecord(id=rid, text=row["text"], source=Source(**src), meta=meta)
