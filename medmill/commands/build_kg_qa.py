"""medmill build-kg-qa INPUT... --out DIR: a medical knowledge graph -> question/answer SFT records."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.builders.streaming.executors import build_executor
from medmill.commands._common import build_config, parse_source_licenses
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import ExecutorOption, RayAddressOption, RunOptions, WorkersOption
from medmill.config import ConfigOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

MODES = ("template", "llm")


def _command_line(inputs: list[Path], out: Path) -> str:
    return invocation(["build-kg-qa", *map(str, inputs), "--out", str(out)])


def build_kg_qa(
    inputs: list[Path] = typer.Argument(
        ..., help="KG files or directories: cMeKG-style entity records, QASystem/DiseaseKG medical.json, "
        "triples (CSV/TSV, JSON Lines, CMeKG_tools spo_list); utf-8 / utf-8-sig / gb18030, sniffed by content."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset dir."),
    mode: str = typer.Option("template", "--mode", help="How questions are made: template (no LLM) or llm (patient-scenario QA from each entity's facts)."),
    mix: str | None = typer.Option(None, "--mix", help="Share entities between modes, e.g. template=0.5,llm=0.5 (uses the LLM flags)."),
    per_entity: int | None = typer.Option(None, "--per-entity", min=1, help="At most N records per entity (sampled with --seed)."),
    seed: int = typer.Option(42, "--seed", help="Seed of template choice, sampling and splits."),
    val_size: float = typer.Option(0.0, "--val-size", help="Share of records in the validation split (grouped by entity)."),
    test_size: float = typer.Option(0.0, "--test-size", help="Share of records in the test split (grouped by entity)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System message put before every question."),
    templates: Path | None = typer.Option(None, "--templates", help="Your own templates YAML (default: medmill's kg_qa_templates.yaml)."),
    combined: bool = typer.Option(True, "--combined/--no-combined", help="Questions combining two relations (科室+检查, 症状+治疗)."),
    reverse: bool = typer.Option(True, "--reverse/--no-reverse", help="Questions from symptoms back to diseases, across the graph."),
    license: str = typer.Option("other", "--license", help="License id written to the dataset card."),
    source_license: list[str] = typer.Option([], "--source-license", help="FILE=LICENSE of an input; repeatable."),
    workers: int = WorkersOption,
    executor: str = ExecutorOption,
    ray_address: str = RayAddressOption,
    config: Path | None = ConfigOption,
    *,
    curation: CurationSettings,
    llm: LLMSettings,
) -> None:
    """Turn a medical knowledge graph into question/answer pairs (templates, every fact from the KG)."""
    from medmill.builders.core.run import run_build
    from medmill.builders.kg_qa.build import KGQABuilder, KGQAConfig
    from medmill.builders.kg_qa.scenario_qa import parse_mix

    t0 = time.perf_counter()
    if mode not in MODES:
        raise MedmillError(f"unknown --mode {mode!r}; available: {', '.join(MODES)}")
    cfg = build_config(
        KGQAConfig, inputs=inputs, out=out, mode=mode, mix=parse_mix(mix) or None, seed=seed, templates=templates,
        template_qa={"per_entity": per_entity, "seed": seed, "system_prompt": system_prompt,
                     "combined": combined, "reverse": reverse},
        llm_qa={"per_entity": per_entity or 3, "system_prompt": system_prompt},
        val_size=val_size, test_size=test_size, license=license,
        source_licenses=parse_source_licenses(source_license), llm=llm, curation=curation,
    )
    run = RunOptions(executor, workers, ray_address)
    report = run_build(KGQABuilder(), cfg, command=_command_line(inputs, out), progress=progress_bars,
                       executor=build_executor(run.executor, run.workers, run.ray_address))
    build_summary(f"build-kg-qa {out}", report.manifest,
                  [*report.figures, ("wall time incl. write (s)", time.perf_counter() - t0)])


def register(app: typer.Typer) -> None:
    app.command("build-kg-qa")(curation_options(llm_options(build_kg_qa)))
