"""Strategy judge: candidates (models' answers, the reference, a given rejected) each scored alone by an
LLM judge; chosen = strictly best, rejected = worst, kept when the margin is at least `min_margin`.
Also the judged-pair helpers the reference strategy shares (optional side-by-side check in both orders)."""

from __future__ import annotations

from typing import Any

from medmill.builders.core.builder import BuildContext
from medmill.builders.core.collect import Collector
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.prefs.config import PrefsConfig, add_pair, reject_item
from medmill.builders.prefs.judging import (
    Candidate,
    NoPair,
    PairChoice,
    Scored,
    both_orders_agree,
    select_pair,
    unique_candidates,
)
from medmill.builders.readers.prompt_items import PromptItem


def judge(cfg: PrefsConfig, items: list[PromptItem], ctx: BuildContext, out: Collector) -> None:
    from medmill.builders.prefs import llm_steps

    answer_t, judge_t = load_prompt("prefs_answer"), load_prompt("prefs_judge")
    if cfg.candidates:
        out.prompt(answer_t.ref)
    out.prompt(judge_t.ref)
    pools: list[list[Candidate]] = [[] for _ in items]
    for i, item in enumerate(items):
        if cfg.include_reference and item.reference:
            pools[i].append(Candidate(item.reference, "reference"))
        if item.given_rejected:
            pools[i].append(Candidate(item.given_rejected, "given_rejected"))
    for settings in cfg.candidates:
        generated, rejects, described = llm_steps.generate(settings, ctx, items, cfg.samples, answer_t)
        record_llm(out, f"candidate:{llm_steps.model_label(settings)}", described)
        out.rejects.extend(rejects)
        for pool, cands in zip(pools, generated, strict=True):
            pool.extend(cands)
    jobs: list[tuple[PromptItem, Candidate]] = []
    ready: list[tuple[PromptItem, list[Candidate]]] = []
    for item, pool in zip(items, pools, strict=True):
        kept, dropped = unique_candidates(pool)
        out.counters["candidates.duplicates"] += dropped
        if len(kept) < 2:
            reject_item(out, "judge", "too_few_candidates", item, f"{len(kept)} distinct answer(s); a pair needs 2",
                       [c.model for c in pool])
            continue
        ready.append((item, kept))
        jobs.extend((item, c) for c in kept)
    scored, described = llm_steps.judge(cfg.judge, ctx, jobs, judge_t)
    record_llm(out, "judge", described)
    judge_name = llm_steps.model_label(cfg.judge)
    judged = []
    cursor = 0
    for item, kept in ready:
        group, cursor = scored[cursor : cursor + len(kept)], cursor + len(kept)
        choice = select_pair(group, cfg.min_margin)
        summary = [s.summary() for s in group]
        if isinstance(choice, NoPair):
            reject_item(out, "judge", choice.reason, item, choice.message, summary)
            continue
        meta = judged_meta("judge", choice, judge_name, cfg.min_margin)
        meta["candidates"] = summary
        judged.append((item, choice, meta))
    add_judged(cfg, ctx, out, judged)


def add_judged(cfg: PrefsConfig, ctx: BuildContext, out: Collector, judged: list[tuple[PromptItem, PairChoice, dict[str, Any]]]) -> None:
    """Judged pairs become records; with --pairwise-check only those the judge also prefers side by side,
    in both orders (a verdict that follows the position rather than the answer drops the pair)."""
    from medmill.builders.prefs import llm_steps

    verdicts: list[tuple[Any, Any]] = [(None, None)] * len(judged)
    if cfg.pairwise_check and judged:
        template = load_prompt("prefs_compare")
        out.prompts.append(template.ref)
        jobs = [(item, c.chosen.candidate.text, c.rejected.candidate.text) for item, c, _ in judged]
        verdicts, described = llm_steps.compare(cfg.judge, ctx, jobs, template)
        record_llm(out, "judge_pairwise", described)
    for (item, choice, meta), (first, second) in zip(judged, verdicts, strict=True):
        if cfg.pairwise_check:
            problem = both_orders_agree(first, second)
            detail = {"chosen_first": first.model_dump() if first else None, "chosen_second": second.model_dump() if second else None}
            if problem is not None:
                reject_item(out, "judge", problem.reason, item, problem.message, detail)
                continue
            meta = {**meta, "pairwise": detail}
        add_pair(out, item, choice.chosen.candidate.text, choice.rejected.candidate.text, meta, "judge")


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


def record_llm(out: Collector, name: str, described: dict[str, Any]) -> None:
    out.llm[name] = described["llm"]
    out.usage[name] = described["usage"]
