"""Strategy judge: candidates (models' answers, the reference, a given rejected) each scored alone by an
LLM judge; chosen = strictly best, rejected = worst, kept when the margin is at least `min_margin`.
Also the judged-pair helpers the reference strategy shares (optional side-by-side check in both orders)."""

from __future__ import annotations

from medmill.builders.core.builder import BuildContext
from medmill.builders.core.collect import Collector
from medmill.builders.core.steps import Step
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.prefs.config import PrefsConfig
from medmill.builders.prefs.steps import (
    CandidateWork,
    JudgedPairs,
    JudgeWork,
    PairwiseWork,
    ReadyPools,
    StartPools,
)


def judge_steps(cfg: PrefsConfig, ctx: BuildContext, out: Collector) -> list[Step]:
    """Pools (reference, given rejected) -> answers from each candidate model -> distinct answers ->
    the judge's scores -> [side-by-side check] -> records; see steps.py."""
    from medmill.builders.prefs import llm_steps

    assert cfg.judge is not None  # checked when reading
    answer_t, judge_t = load_prompt("prefs_answer"), load_prompt("prefs_judge")
    judge_name = llm_steps.model_label(cfg.judge)
    steps: list[Step] = [StartPools(cfg.include_reference)]
    for n, settings in enumerate(cfg.candidates):
        label = llm_steps.model_label(settings)
        work = CandidateWork(cfg.samples, label, settings.seed)
        steps.append(ctx.llm_step(f"candidates{n}", work, settings, out, label=f"candidate:{label}", prompts=[answer_t.ref]))
    steps.append(ReadyPools())
    steps.append(ctx.llm_step("judge", JudgeWork(cfg.min_margin, judge_name), cfg.judge, out, label="judge",
                              prompts=[judge_t.ref]))
    return steps + judged_steps(cfg, ctx, out)


def judged_steps(cfg: PrefsConfig, ctx: BuildContext, out: Collector) -> list[Step]:
    """Judged pairs become records; with --pairwise-check only those the judge also prefers side by side,
    in both orders."""
    from medmill.builders.prefs import llm_steps

    if not cfg.pairwise_check or cfg.judge is None:
        return [JudgedPairs()]
    work = PairwiseWork(llm_steps.model_label(cfg.judge))
    return [ctx.llm_step("pairwise", work, cfg.judge, out, label="judge_pairwise",
                         prompts=[load_prompt("prefs_compare").ref], optional=True)]
