"""Rubric scores and the choice of a pair from scored candidates.

The judge scores every answer alone (pointwise), so the order answers are shown in cannot bias it.
A pair needs every candidate scored, one answer strictly best, and a margin of at least `min_margin`
between best and worst: a tie or a missing score is a reject with its reason, never a pair (distilabel's
DPO formatter makes chosen == rejected on tied ratings and crashes on a None rating).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medmill.schemas.records import normalise_for_compare

CRITERIA = ("helpful", "honest", "harmless", "accurate", "safe")


class RubricScores(BaseModel):
    """What the judge returns for one answer (structured output schema)."""

    model_config = ConfigDict(extra="ignore")

    helpful: int = Field(ge=1, le=10)
    honest: int = Field(ge=1, le=10)
    harmless: int = Field(ge=1, le=10)
    accurate: int = Field(ge=1, le=10)
    safe: int = Field(ge=1, le=10)
    rationale: str = ""

    @property
    def overall(self) -> float:
        """Mean of the five criteria: no criterion can be traded away for free."""
        return sum(getattr(self, c) for c in CRITERIA) / len(CRITERIA)


class PairVerdict(BaseModel):
    """What the judge returns when it compares two answers side by side (structured output schema)."""

    model_config = ConfigDict(extra="ignore")

    better: Literal["A", "B", "tie"]
    rationale: str = ""


@dataclass
class Candidate:
    text: str
    model: str  # a model name, "reference" (the corpus/KG answer) or "given_rejected"
    sample: int = 0


@dataclass
class Scored:
    candidate: Candidate
    scores: RubricScores | None = None
    error: str | None = None  # why there is no score (the engine's reason code)

    @property
    def overall(self) -> float | None:
        return None if self.scores is None else self.scores.overall

    def summary(self) -> dict:
        out = {"model": self.candidate.model, "sample": self.candidate.sample, "score": self.overall}
        if self.scores is not None:
            out["rubric"] = self.scores.model_dump()
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class PairChoice:
    chosen: Scored
    rejected: Scored
    margin: float


@dataclass
class NoPair:
    reason: str  # missing_score | too_few_candidates | tie | low_margin
    message: str


def unique_candidates(candidates: list[Candidate]) -> tuple[list[Candidate], int]:
    """Drop candidates whose text equals an earlier one after normalisation; return (kept, dropped)."""
    seen: set[str] = set()
    kept = []
    for c in candidates:
        key = normalise_for_compare(c.text)
        if not key or key in seen:
            continue
        seen.add(key)
        kept.append(c)
    return kept, len(candidates) - len(kept)


def select_pair(scored: list[Scored], min_margin: float) -> PairChoice | NoPair:
    """chosen = the strictly best answer, rejected = the worst (first of equals), margin >= min_margin."""
    missing = [s for s in scored if s.overall is None]
    if missing:
        who = ", ".join(f"{s.candidate.model}#{s.candidate.sample} ({s.error or 'no score'})" for s in missing)
        return NoPair("missing_score", f"no usable score for {who}")
    if len(scored) < 2:
        return NoPair("too_few_candidates", f"{len(scored)} distinct answer(s); a pair needs 2")
    ranked = sorted(scored, key=lambda s: -s.overall)
    best = ranked[0]
    worst = min(scored, key=lambda s: s.overall)  # first of equally bad answers, in candidate order
    if best.overall == ranked[1].overall:
        tied = sum(1 for s in scored if s.overall == best.overall)
        return NoPair("tie", f"{tied} answers tie for best at {best.overall:g}")
    margin = best.overall - worst.overall
    if margin < min_margin:
        return NoPair("low_margin", f"best {best.overall:g} - worst {worst.overall:g} = {margin:g} < {min_margin:g}")
    return PairChoice(best, worst, margin)


def confirm_reference(reference: Scored, model: Scored, min_margin: float) -> PairChoice | NoPair:
    """Reference strategy: keep (reference, model answer) only when the judge prefers the reference."""
    for s in (reference, model):
        if s.overall is None:
            return NoPair("missing_score", f"no usable score for {s.candidate.model} ({s.error or 'no score'})")
    margin = reference.overall - model.overall
    if margin < 0:
        return NoPair("judge_prefers_model", f"model {model.overall:g} > reference {reference.overall:g}")
    if margin == 0:
        return NoPair("tie", f"reference and model both {model.overall:g}")
    if margin < min_margin:
        return NoPair("low_margin", f"reference {reference.overall:g} - model {model.overall:g} = {margin:g} < {min_margin:g}")
    return PairChoice(reference, model, margin)


def both_orders_agree(chosen_first: PairVerdict | None, chosen_second: PairVerdict | None) -> NoPair | None:
    """Position-bias check: chosen shown as A, then as B; None when both verdicts prefer chosen."""
    if chosen_first is None or chosen_second is None:
        return NoPair("missing_verdict", "a side-by-side verdict could not be read")
    verdicts = (chosen_first.better, chosen_second.better)
    if verdicts == ("A", "B"):
        return None
    if verdicts == ("B", "A"):
        return NoPair("pairwise_prefers_rejected", "side by side, the judge prefers the rejected answer in both orders")
    if "tie" in verdicts:
        return NoPair("pairwise_tie", f"side-by-side verdicts {verdicts} (chosen first, chosen second)")
    return NoPair("position_inconsistent", f"the verdict follows the position, not the answer: {verdicts}")
