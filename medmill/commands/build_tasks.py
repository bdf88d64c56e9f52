"""medmill build-tasks --task mcq|ner|rc|cls INPUT... --out DIR: TCMChat-style task datasets with an eval split."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.builders.tasks.build import TasksConfig
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._common import parse_pairs
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

_TASK_HELP = ("mcq: single-choice questions from a KG (no LLM); ner: entity extraction from texts with a KG lexicon "
              "(no LLM, needs --kg); rc: reading comprehension from texts (LLM); cls: department classification "
              "from Toyhom-style department,title,ask,answer CSVs (no LLM).")


def build_tasks(
    inputs: list[Path] = typer.Argument(..., help="mcq: KG files/dirs (any format build-kg-qa reads); ner/rc: text documents (.txt/.md/JSON/PDF/DOCX, as build-book-qa); cls: department CSVs."),
    task: str = typer.Option(..., "--task", help=_TASK_HELP),
    out: str = OutOption,
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
    common: CommonBuildOptions = GENERATED,
    *,
    llm: LLMSettings,
    curation: CurationSettings,
) -> None:
    """Build task-format datasets (multiple choice, NER, reading comprehension, classification) with an eval split."""
    from medmill.builders.core.run import run_build
    from medmill.builders.tasks.build import TASKS, TasksBuilder

    t0 = time.perf_counter()
    if task not in TASKS:
        raise MedmillError(f"unknown --task {task!r}; available: {', '.join(TASKS)}")
    if style not in ("tcmchat", "cmexam"):
        raise MedmillError(f"unknown --style {style!r}; available: tcmchat, cmexam")
    seed = common.fields["seed"]
    cfg = common.config(
        TasksConfig, task=task, inputs=inputs, out=out, kg=kg, curation=curation, llm=llm,
        mcq=dict(options=options, style=style, relations=relations, per_entity=per_entity, seed=seed,
                 system_prompt=system_prompt),
        ner=dict(relation_types=parse_pairs(ner_type, "--ner-type"), system_prompt=system_prompt),
        rc=dict(per_chunk=per_chunk, system_prompt=system_prompt),
        cls=dict(min_per_label=min_per_label, max_per_label=max_per_label, seed=seed, system_prompt=system_prompt),
        chunking=dict(chunk_size=chunk_size, chunk_overlap=0, min_chunk_chars=min(50, chunk_size // 2)),
    )
    command = invocation(["build-tasks", "--task", task, *map(str, inputs), "--out", str(out)])
    report = run_build(TasksBuilder(), cfg, command=command, progress=progress_bars, executor=common.executor())
    build_summary(f"build-tasks --task {task} {out}", report.manifest,
                  report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-tasks")(build_options(TasksConfig)(curation_options(llm_options(build_tasks))))
