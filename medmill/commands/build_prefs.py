"""medmill build-prefs INPUT... --out DIR --strategy corrupt|judge|reference: preference pairs for RM / DPO."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.builders.prefs.config import PrefsConfig
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation


def build_prefs(
    inputs: list[Path] = typer.Argument(
        ..., help="sft dataset dirs, prompt files (JSON/JSONL/CSV with a question column) or preference files "
        "(MedicalGPT {conversations,chosen,rejected}, {question,response_chosen,response_rejected}, TRL {prompt,chosen,rejected})."
    ),
    out: str = OutOption,
    strategy: Literal["corrupt", "judge", "reference"] = typer.Option(
        "corrupt", "--strategy", help="corrupt: perturbed reference as rejected (no LLM); judge: LLM-judged candidates; "
        "reference: reference vs a model's answer."
    ),
    question_field: str | None = typer.Option(None, "--question-field", help="Question column of prompt files (default: question/prompt/instruction/query/ask/问题)."),
    answer_field: str | None = typer.Option(None, "--answer-field", help="Reference-answer column of prompt files (default: answer/output/response/reference/答案)."),
    perturbations: str = typer.Option(
        "fact_swap,truncate,unsafe_advice,overconfident,dose_change", "--perturbations",
        help="corrupt: comma-separated perturbations to use (the least-used applicable one is picked per answer)."
    ),
    candidate_model: list[str] = typer.Option(
        [], "--candidate-model", help="MODEL or MODEL@BASE_URL answering the prompts; repeatable (default: --llm-model)."
    ),
    samples: int = typer.Option(1, "--samples", min=1, max=16, help="judge: answers per candidate model and prompt (sampled at --temperature)."),
    judge_model: str | None = typer.Option(
        None, "--judge-model", help="MODEL or MODEL@BASE_URL scoring answers (judge: default --llm-model; reference: confirms pairs when set)."
    ),
    min_margin: float = typer.Option(1.0, "--min-margin", min=0.0, help="Least score gap (1-10 rubric mean) between chosen and rejected."),
    pairwise_check: bool = typer.Option(
        False, "--pairwise-check/--no-pairwise-check",
        help="Also compare chosen and rejected side by side in both orders; keep a pair only when both prefer chosen.",
    ),
    include_reference: bool = typer.Option(True, "--include-reference/--no-include-reference", help="judge: the reference answer competes as a candidate."),
    common: CommonBuildOptions = GENERATED,
    *,
    llm: LLMSettings,
    curation: CurationSettings,
) -> None:
    """Build preference pairs (prompt, chosen, rejected) for reward models, DPO and PPO."""
    from medmill.builders.core.run import run_build
    from medmill.builders.prefs.build import PrefsBuilder
    from medmill.builders.prefs.llm_steps import model_settings

    t0 = time.perf_counter()
    candidates = [model_settings(s, llm) for s in candidate_model]
    if not candidates and strategy != "corrupt" and llm.model:
        candidates = [llm]
    judge = model_settings(judge_model, llm) if judge_model else None
    if judge is None and strategy == "judge" and llm.model:
        judge = llm
    cfg = common.config(
        PrefsConfig,
        inputs=inputs,
        out=out,
        strategy=strategy,
        question_field=question_field,
        answer_field=answer_field,
        perturbations=[p.strip() for p in perturbations.split(",") if p.strip()],
        candidates=candidates if strategy != "corrupt" else [],
        samples=samples,
        judge=judge if strategy != "corrupt" else None,
        min_margin=min_margin,
        pairwise_check=pairwise_check,
        include_reference=include_reference,
        curation=curation,
    )
    command = invocation(["build-prefs", *inputs, "--out", out, "--strategy", strategy])
    report = run_build(PrefsBuilder(), cfg, command=command, progress=progress_bars, executor=common.executor())
    build_summary(f"build-prefs {out}", report.manifest, report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-prefs")(build_options(PrefsConfig)(curation_options(llm_options(build_prefs))))
