"""medmill build-tasks --task mcq|ner|rc|cls INPUT... --out DIR: TCMChat-style task datasets with an eval split."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.commands._common import build_config, parse_source_licenses
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.config import ConfigOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

_TASK_HELP = ("mcq: single-choice questions from a KG (no LLM); ner: entity extraction from texts with a KG lexicon "
              "(no LLM, needs --kg); rc: reading comprehension from texts (LLM); cls: department classification "
              "from Toyhom-style department,title,ask,answer CSVs (no LLM).")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise MedmillError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def build_tasks(
    inputs: list[Path] = typer.Argument(..., help="mcq: KG files/dirs (any format build-kg-qa reads); ner/rc: text documents (.txt/.md/JSON/PDF/DOCX, as build-book-qa); cls: department CSVs."),
    task: str = typer.Option(..., "--task", help=_TASK_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset dir."),
    kg: list[Path] = typer.Option([], "--kg", help="ner: the knowledge graph whose entity lexicon tags the texts; repeatable."),
    style: str = typer.Option("tcmchat", "--style", help="mcq: tcmchat (以下哪一项是…？, answer 'B. text') or cmexam (下列属于…的是（　）, answer + 解析)."),
    options: int = typer.Option(4, "--options", min=2, max=8, help="mcq: options per question."),
    relations: list[str] = typer.Option([], "--relation", help="mcq: only these KG relations; repeatable (default all)."),
    per_entity: int | None = typer.Option(None, "--per-entity", min=1, help="mcq: at most N questions per entity."),
    ner_type: list[str] = typer.Option([], "--ner-type", help="ner: RELATION=TYPE for relation values (e.g. 忌食=食物); repeatable."),
    chunk_size: int = typer.Option(400, "--chunk-size", min=50, help="ner/rc: characters per text chunk."),
    per_chunk: int = typer.Option(3, "--per-chunk", min=1, max=10, help="rc: questions asked per chunk."),
    min_per_label: int = typer.Option(5, "--min-per-label", min=1, help="cls: departments with fewer questions are left out (rejected)."),
    max_per_label: int | None = typer.Option(None, "--max-per-label", min=1, help="cls: at most N questions per department (seeded sample)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System message put before every record."),
    seed: int = typer.Option(42, "--seed", help="Seed of option order, sampling and splits."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N entities / chunks / questions (trial runs)."),
    val_size: float = typer.Option(0.0, "--val-size", help="Share of records in the validation split."),
    test_size: float = typer.Option(0.1, "--test-size", help="Share of records in the test (eval) split; grouped by entity (mcq), chunk (ner/rc) or row (cls)."),
    license: str = typer.Option("other", "--license", help="License id written to the dataset card."),
    source_license: list[str] = typer.Option([], "--source-license", help="FILE=LICENSE of an input; repeatable."),
    config: Path | None = ConfigOption,
    *,
    curation: CurationSettings,
    llm: LLMSettings,
) -> None:
    """Build task-format datasets (multiple choice, NER, reading comprehension, classification) with an eval split."""
    from medmill.builders.core.run import run_build
    from medmill.builders.tasks.build import TASKS, TasksBuilder, TasksConfig

    t0 = time.perf_counter()
    if task not in TASKS:
        raise MedmillError(f"unknown --task {task!r}; available: {', '.join(TASKS)}")
    if style not in ("tcmchat", "cmexam"):
        raise MedmillError(f"unknown --style {style!r}; available: tcmchat, cmexam")
    cfg = build_config(
        TasksConfig,
        task=task, inputs=inputs, out=out, kg=kg, seed=seed, val_size=val_size, test_size=test_size, limit=limit,
        license=license, source_licenses=parse_source_licenses(source_license), curation=curation, llm=llm,
        mcq=dict(options=options, style=style, relations=relations, per_entity=per_entity, seed=seed,
                 system_prompt=system_prompt),
        ner=dict(relation_types=_pairs(ner_type, "--ner-type"), system_prompt=system_prompt),
        rc=dict(per_chunk=per_chunk, system_prompt=system_prompt),
        cls=dict(min_per_label=min_per_label, max_per_label=max_per_label, seed=seed, system_prompt=system_prompt),
        chunking=dict(chunk_size=chunk_size, chunk_overlap=0, min_chunk_chars=min(50, chunk_size // 2)),
    )
    command = invocation(["build-tasks", "--task", task, *map(str, inputs), "--out", str(out)])
    report = run_build(TasksBuilder(), cfg, command=command, progress=progress_bars)
    build_summary(f"build-tasks --task {task} {out}", report.manifest,
                  [*report.figures, ("wall time incl. write (s)", time.perf_counter() - t0)])


def register(app: typer.Typer) -> None:
    app.command("build-tasks")(curation_options(llm_options(build_tasks)))
