"""The judge and reference strategies as item-wise steps, so their LLM calls run on the workers
(`--workers N`, `--executor ray`) like any map step: each prompt travels as a `Pool` (its candidate
answers), through candidate generation (one LLM step per model), the checks between, the judge and
the optional side-by-side check. Every step's rows come in item order, so any cut of the prompts
into batches gives the dataset one process writes. The `*Work` objects are the LLM steps' work
(picklable: model labels and thresholds, never settings or keys); the others are plain map steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medmill.builders.core.collect import Collector
from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.llm.types import Runner
from medmill.builders.prefs import llm_steps
from medmill.builders.prefs.config import add_pair, reject_item
from medmill.builders.prefs.judging import (
    Candidate,
    NoPair,
    PairChoice,
    Scored,
    both_orders_agree,
    confirm_reference,
    select_pair,
    unique_candidates,
)
from medmill.builders.readers.prompt_items import PromptItem


@dataclass
class Pool:
    """One prompt on its way to a pair: the candidate answers so far (reference strategy: its rival)."""

    item: PromptItem
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class Judged:
    """A pair the judge chose, waiting for the side-by-side check or its record."""

    item: PromptItem
    choice: PairChoice
    meta: dict[str, Any]


def _collected(batch: list[Any], each: Callable[[Any, Collector], None]) -> StepResult:
    """Run `each(x, out)` over the batch into a fresh Collector and return what it gathered."""
    out = Collector()
    try:
        for x in batch:
            each(x, out)
        return StepResult(out.records, list(out.rejects), out.counters)  # type: ignore[arg-type]
    finally:
        out.rejects.close()


class StartPools(MapStep):
    """Judge strategy: each prompt's pool starts with the reference and the given rejected answer."""

    name = "pools"

    def __init__(self, include_reference: bool) -> None:
        self.include_reference = include_reference

    def __call__(self, batch: list[PromptItem]) -> StepResult:
        pools = []
        for item in batch:
            pool = Pool(item)
            if self.include_reference and item.reference:
                pool.candidates.append(Candidate(item.reference, "reference"))
            if item.given_rejected:
                pool.candidates.append(Candidate(item.given_rejected, "given_rejected"))
            pools.append(pool)
        return StepResult(pools)


@dataclass
class CandidateWork:
    """LLM step: `samples` answers per prompt from the model `label` into each pool (`only_empty`: only
    for pools with no candidate yet, the reference strategy's prompts without a given rival)."""

    samples: int
    label: str
    seed: int | None
    only_empty: bool = False

    def __call__(self, pools: list[Pool], engine: Runner, out: Collector) -> None:
        todo = [p for p in pools if not (self.only_empty and p.candidates)]
        per_item, rejects = llm_steps.generate(engine, [p.item for p in todo], self.samples, load_prompt("prefs_answer"),
                                               self.label, self.seed)
        out.rejects.extend(rejects)
        for pool, candidates in zip(todo, per_item, strict=True):
            pool.candidates.extend(candidates)
        out.records.extend(pools)  # type: ignore[arg-type]


class ReadyPools(MapStep):
    """Judge strategy: duplicate answers dropped; a prompt with fewer than two distinct answers rejected."""

    name = "ready"

    def __call__(self, batch: list[Pool]) -> StepResult:
        def each(pool: Pool, out: Collector) -> None:
            kept, dropped = unique_candidates(pool.candidates)
            out.counters["candidates.duplicates"] += dropped
            if len(kept) < 2:
                reject_item(out, "judge", "too_few_candidates", pool.item, f"{len(kept)} distinct answer(s); a pair needs 2",
                            [c.model for c in pool.candidates])
            else:
                out.records.append(Pool(pool.item, kept))  # type: ignore[arg-type]

        return _collected(batch, each)


@dataclass
class JudgeWork:
    """LLM step (judge strategy): every answer of a pool scored alone; strictly best vs worst by the margin."""

    min_margin: float
    judge: str

    def __call__(self, pools: list[Pool], engine: Runner, out: Collector) -> None:
        jobs = [(p.item, c) for p in pools for c in p.candidates]
        scored = llm_steps.judge(engine, jobs, load_prompt("prefs_judge"), self.judge)
        cursor = 0
        for pool in pools:
            group, cursor = scored[cursor : cursor + len(pool.candidates)], cursor + len(pool.candidates)
            choice = select_pair(group, self.min_margin)
            summary = [s.summary() for s in group]
            if isinstance(choice, NoPair):
                reject_item(out, "judge", choice.reason, pool.item, choice.message, summary)
                continue
            meta = judged_meta("judge", choice, self.judge, self.min_margin)
            meta["candidates"] = summary
            out.records.append(Judged(pool.item, choice, meta))  # type: ignore[arg-type]


class ReferencePools(MapStep):
    """Reference strategy: prompts without a reference rejected; the given rejected answer is the rival."""

    name = "with_reference"

    def __call__(self, batch: list[PromptItem]) -> StepResult:
        def each(item: PromptItem, out: Collector) -> None:
            if item.reference is None:
                reject_item(out, "reference", "no_reference", item, "no reference answer (an sft dir or an answer column)")
                return
            rival = [Candidate(item.given_rejected, "given_rejected")] if item.given_rejected else []
            out.records.append(Pool(item, rival))  # type: ignore[arg-type]

        return _collected(batch, each)


class ReferencePairs(MapStep):
    """Reference strategy: (reference, rival) pairs; records at once when no judge confirms them."""

    name = "rivals"

    def __init__(self, has_model: bool, judged: bool) -> None:
        self.has_model, self.judged = has_model, judged

    def __call__(self, batch: list[Pool]) -> StepResult:
        def each(pool: Pool, out: Collector) -> None:
            item = pool.item
            if not pool.candidates:
                if not self.has_model:
                    reject_item(out, "reference", "no_model_answer", item, "no given rejected answer and no --candidate-model")
                return  # otherwise the generation failure is already a reject row
            kept, _ = unique_candidates([Candidate(item.reference or "", "reference"), pool.candidates[0]])
            if len(kept) < 2:
                reject_item(out, "reference", "same_answer", item, "the model's answer equals the reference")
            elif self.judged:
                out.records.append(Pool(item, kept))  # type: ignore[arg-type]
            else:
                ref, rival = kept
                add_pair(out, item, ref.text, rival.text, {"strategy": "reference", "rejected_model": rival.model}, "reference")

        return _collected(batch, each)


@dataclass
class ConfirmWork:
    """LLM step (reference strategy): reference and rival scored alone; kept when the reference wins."""

    min_margin: float
    judge: str

    def __call__(self, pools: list[Pool], engine: Runner, out: Collector) -> None:
        jobs = [(p.item, c) for p in pools for c in p.candidates]
        scored = llm_steps.judge(engine, jobs, load_prompt("prefs_judge"), self.judge)
        for n, pool in enumerate(pools):
            ref_s, rival_s = scored[2 * n], scored[2 * n + 1]
            choice = confirm_reference(ref_s, rival_s, self.min_margin)
            if isinstance(choice, NoPair):
                reject_item(out, "judge", choice.reason, pool.item, choice.message, [ref_s.summary(), rival_s.summary()])
                continue
            out.records.append(Judged(pool.item, choice, judged_meta("reference", choice, self.judge, self.min_margin)))  # type: ignore[arg-type]


@dataclass
class PairwiseWork:
    """LLM step (--pairwise-check): the judge compares chosen and rejected side by side in both orders;
    a verdict that follows the position rather than the answer drops the pair."""

    judge: str

    def __call__(self, judged: list[Judged], engine: Runner, out: Collector) -> None:
        jobs = [(j.item, j.choice.chosen.candidate.text, j.choice.rejected.candidate.text) for j in judged]
        verdicts = llm_steps.compare(engine, jobs, load_prompt("prefs_compare"), self.judge)
        for j, (first, second) in zip(judged, verdicts, strict=True):
            problem = both_orders_agree(first, second)
            detail = {"chosen_first": first.model_dump() if first else None, "chosen_second": second.model_dump() if second else None}
            if problem is not None:
                reject_item(out, "judge", problem.reason, j.item, problem.message, detail)
                continue
            _add_judged(out, j, {**j.meta, "pairwise": detail})


class JudgedPairs(MapStep):
    """Judged pairs become records (no side-by-side check)."""

    name = "pairs"

    def __call__(self, batch: list[Judged]) -> StepResult:
        return _collected(batch, lambda j, out: _add_judged(out, j, j.meta))


def _add_judged(out: Collector, j: Judged, meta: dict[str, Any]) -> None:
    add_pair(out, j.item, j.choice.chosen.candidate.text, j.choice.rejected.candidate.text, meta, "judge")


def judged_meta(strategy: str, choice: PairChoice, judge_name: str, min_margin: float) -> dict[str, Any]:
    def side(s: Scored) -> dict[str, Any]:
        return {"model": s.candidate.model, "sample": s.candidate.sample, "score": s.overall,
                "rubric": s.scores.model_dump() if s.scores else None}

    return {
        "strategy": strategy,
        "judge": judge_name,
        "models": sorted({choice.chosen.candidate.model, choice.rejected.candidate.model}),
        "chosen_model": choice.chosen.candidate.model,
        "rejected_model": choice.rejected.candidate.model,
        "scores": {"chosen": side(choice.chosen), "rejected": side(choice.rejected), "margin": choice.margin},
        "min_margin": min_margin,
    }
