"""medmill build-self-instruct --seeds FILE --out DIR --num N: new instruction data grown from seed tasks."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.builders.self_instruct.build import SelfInstructConfig
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError


def build_self_instruct(
    seeds: list[Path] = typer.Option(..., "--seeds", help="Seed tasks: MedicalGPT-zh dialogue_seed_task.json (instruction = category), alpaca/BELLE JSON, JSON Lines of instructions, or a text file with one instruction per line; repeatable."),
    out: str = OutOption,
    num: int = typer.Option(..., "--num", "-n", min=1, help="Accepted tasks to reach."),
    categories: list[str] = typer.Option([], "--categories", help="Extra task categories besides 病情诊断, 病因分析, 治疗方案, 用药建议, 指标解读, 就医建议, 预防措施, 预后评估; comma-separated or repeatable."),
    only_categories: bool = typer.Option(False, "--only-categories", help="Use only the --categories given, not the default eight."),
    per_request: int = typer.Option(5, "--per-request", "-k", min=1, max=20, help="Tasks asked for per request (fewer when a category needs fewer to reach its share of --num)."),
    turns: int = typer.Option(1, "--turns", min=1, max=10, help="1: single question/answer; N > 1: dialogues of N patient-doctor exchanges."),
    round_size: int = typer.Option(8, "--round-size", min=1, help="Requests per round (sent at once). Keep it when resuming: it shapes the requests."),
    max_requests: int | None = typer.Option(None, "--max-requests", min=1, help="Stop after this many requests even below --num (default 3 x the requests --num needs + --round-size)."),
    novelty_threshold: float = typer.Option(0.6, "--novelty-threshold", min=0.01, max=1.0, help="Character 3-gram Jaccard at or above which a task is a near-copy of a seed or an accepted task."),
    seeds_per_request: int = typer.Option(4, "--seeds-per-request", min=1, max=20, help="Seed tasks shown in each request."),
    recent_per_request: int = typer.Option(6, "--recent-per-request", min=0, max=50, help="Recently accepted tasks shown in each request."),
    prompt: str = typer.Option("self_instruct", "--prompt", help="Prompt id shipped with medmill or your own YAML file."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System message put before every record."),
    common: CommonBuildOptions = GENERATED,
    *,
    llm: LLMSettings,
    curation: CurationSettings,
) -> None:
    """Grow new medical instruction data (QA or dialogues) from seed tasks, balanced across categories."""
    from medmill.builders.core.run import run_build
    from medmill.builders.self_instruct.balance import merge_categories
    from medmill.builders.self_instruct.build import SelfInstructBuilder

    t0 = time.perf_counter()
    extra = [c for item in categories for c in item.replace("，", ",").split(",")]
    if only_categories and not [c for c in extra if c.strip()]:
        raise MedmillError("--only-categories needs at least one --categories value")
    cfg = common.config(
        SelfInstructConfig, inputs=seeds, out=out, prompt=prompt, llm=llm, curation=curation,
        generation=dict(
            num=num, per_request=per_request, round_size=round_size, max_requests=max_requests, turns=turns,
            categories=merge_categories(extra, replace=only_categories), seeds_per_request=seeds_per_request,
            recent_per_request=recent_per_request, novelty_threshold=novelty_threshold, seed=common.fields["seed"],
            system_prompt=system_prompt,
        ),
    )
    command = invocation(["build-self-instruct", "--out", str(out), "--num", str(num)])
    report = run_build(SelfInstructBuilder(), cfg, command=command, progress=progress_bars, executor=common.executor())
    build_summary(f"build-self-instruct {out}", report.manifest,
                  report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-self-instruct")(build_options(SelfInstructConfig)(curation_options(llm_options(build_self_instruct))))
