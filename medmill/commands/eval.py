"""medmill eval --model PATH [--model PATH2 ...] --task mcq|generation|ppl|rm|judge --data DIR|FILE ... --out DIR"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from pydantic import ValidationError

from medmill.builders.llm.types import LLMSettings
from medmill.commands._common import option_error
from medmill.commands._llm_options import llm_options
from medmill.config import ConfigOption
from medmill.console import console, err_console, progress_bars
from medmill.schemas.errors import MedmillError

HELP = (
    "Evaluate checkpoints side by side: mcq (multiple-choice accuracy), generation (ROUGE-L/BLEU/grounding), "
    "judge (LLM win rate), ppl (domain vs general perplexity), rm (reward-model pair accuracy). "
    "Writes OUT/results.json and OUT/report.html; per-item results are cached so a re-run resumes."
)


def eval_cmd(
    model: list[str] = typer.Option(..., "--model", "-m", help="Checkpoint dir (full weights or LoRA adapter); repeatable for a side-by-side run."),
    task: Literal["mcq", "generation", "ppl", "rm", "judge"] = typer.Option(..., "--task", "-t", help="mcq | generation | ppl | rm | judge"),
    data: list[str] = typer.Option(..., "--data", "-d", help="Dataset dir (its test split, else validation) or a file (JSON/JSONL/CSV); repeatable."),
    out: Path = typer.Option(..., "--out", "-o", help="Output dir: results.json, report.html, items/ (cache)."),
    general: list[str] = typer.Option([], "--general", help="ppl: general-domain text (dir or file) shown beside the --data domain text; repeatable."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present; several GPUs share the model), cpu, cuda, cuda:N."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Sequences per forward pass / generation batch."),
    bf16: bool = typer.Option(False, "--bf16", help="Load weights in bfloat16 (GPUs with bf16)."),
    template: str | None = typer.Option(None, "--template", help="Chat template for checkpoints without one (chatml/qwen, llama3, ...)."),
    split: str | None = typer.Option(None, "--split", help="Split of dataset dirs to evaluate on (default: test, else validation)."),
    max_items: int | None = typer.Option(None, "--max-items", min=1, help="Only the first N items of each --data (smoke runs)."),
    scoring: Literal["loglik", "generate"] = typer.Option("loglik", "--scoring", help="mcq: loglik (score each option, no generation) or generate (parse the generated letter)."),
    continuation: Literal["letter", "option"] = typer.Option("letter", "--continuation", help="mcq loglik: score the letter alone, or letter + option text."),
    length_norm: bool = typer.Option(True, "--length-norm/--no-length-norm", help="mcq loglik: pick by mean log-prob per token (default) or by the sum; both accuracies are reported."),
    column: list[str] = typer.Option([], "--column", help="mcq files: KEY=COLUMN for question, options, answer, category, type; repeatable."),
    train_dir: list[str] = typer.Option([], "--train-dir", help="mcq: training dataset dir to check the eval items against (overlap reported); repeatable."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="generation/judge answer length (mcq generate uses at most 32)."),
    grounding_threshold: float = typer.Option(0.5, "--grounding-threshold", help="generation: share of a record's KG values / references an answer must state to count as grounded."),
    judge_prompt: str = typer.Option("eval_judge", "--judge-prompt", help="judge: prompt id in medmill.prompts or a YAML file (rubric)."),
    max_length: int = typer.Option(1024, "--max-length", help="ppl: tokens per scoring window."),
    config: Path | None = ConfigOption,
    *,
    llm: LLMSettings,
) -> None:
    from medmill.evaluation.run import run_eval
    from medmill.evaluation.settings import EvalSettings, parse_columns
    from medmill.evaluation.summary import fmt, side_by_side

    try:
        settings = EvalSettings(
            task=task, models=model, data=data, out=out, general=general, device=device, batch_size=batch_size, bf16=bf16,
            template=template, split=split, max_items=max_items, scoring=scoring, continuation=continuation,
            length_norm=length_norm, columns=parse_columns(column), train_dirs=train_dir, max_new_tokens=max_new_tokens,
            grounding_threshold=grounding_threshold, judge_prompt=judge_prompt, max_length=max_length,
        )  # fmt: skip
    except ValidationError as e:
        raise option_error(e) from None
    except ValueError as e:
        raise MedmillError(str(e)) from None

    result = run_eval(settings, llm, progress_bars)

    from rich.table import Table

    columns, rows = side_by_side(task, result.results, {s.data: s.role for s in result.sources})
    table = Table(title=f"medmill eval {task}", show_header=True, header_style="bold")
    table.add_column("data")
    table.add_column("metric")
    for c in columns:
        table.add_column(c, justify="right")
    for data_name, metric, values in rows:
        table.add_row(data_name, metric, *[fmt(v) for v in values])
    console.print(table)
    for src in result.sources:
        if src.unusable:
            err_console.print(f"{src.data}: {src.unusable} unusable row(s), e.g. {'; '.join(src.problems[:2])}", highlight=False, markup=False)
    for data_name, o in result.overlap.items():
        console.print(
            f"overlap: {o['overlapping_items']} of {o['eval_items']} eval items of {data_name} share text with the training dirs",
            highlight=False, markup=False,
        )  # fmt: skip
    console.print(f"wrote {result.out / 'results.json'} and {result.out / 'report.html'} ({result.seconds:.1f} s)", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval", help=HELP)(llm_options(eval_cmd))
