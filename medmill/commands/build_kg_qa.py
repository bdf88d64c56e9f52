"""medmill build-kg-qa INPUT... --out DIR: a medical knowledge graph -> question/answer SFT records."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.kg_qa.build import KGQAConfig
from medmill.builders.llm.types import LLMSettings
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

MODES = ("template", "llm")


def _command_line(inputs: list[Path], out: str) -> str:
    return invocation(["build-kg-qa", *map(str, inputs), "--out", str(out)])


def build_kg_qa(
    inputs: list[Path] = typer.Argument(
        ..., help="KG files or directories: cMeKG-style entity records, QASystem/DiseaseKG medical.json, "
        "triples (CSV/TSV, JSON Lines, CMeKG_tools spo_list); utf-8 / utf-8-sig / gb18030, sniffed by content."
    ),
    out: str = OutOption,
    mode: str = typer.Option("template", "--mode", help="How questions are made: template (no LLM) or llm (patient-scenario QA from each entity's facts)."),
    mix: str | None = typer.Option(None, "--mix", help="Share entities between modes, e.g. template=0.5,llm=0.5 (uses the LLM flags)."),
    per_entity: int | None = typer.Option(None, "--per-entity", min=1, help="At most N records per entity (sampled with --seed)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System message put before every question."),
    templates: Path | None = typer.Option(None, "--templates", help="Your own templates YAML (default: medmill's kg_qa_templates.yaml)."),
    combined: bool = typer.Option(True, "--combined/--no-combined", help="Questions combining two relations (科室+检查, 症状+治疗)."),
    reverse: bool = typer.Option(True, "--reverse/--no-reverse", help="Questions from symptoms back to diseases, across the graph."),
    common: CommonBuildOptions = GENERATED,
    *,
    llm: LLMSettings,
    curation: CurationSettings,
) -> None:
    """Turn a medical knowledge graph into question/answer pairs (templates, every fact from the KG)."""
    from medmill.builders.core.run import run_build
    from medmill.builders.kg_qa.build import KGQABuilder
    from medmill.builders.kg_qa.scenario_qa import parse_mix

    t0 = time.perf_counter()
    if mode not in MODES:
        raise MedmillError(f"unknown --mode {mode!r}; available: {', '.join(MODES)}")
    cfg = common.config(
        KGQAConfig, inputs=inputs, out=out, mode=mode, mix=parse_mix(mix) or None, templates=templates,
        template_qa={"per_entity": per_entity, "seed": common.fields["seed"], "system_prompt": system_prompt,
                     "combined": combined, "reverse": reverse},
        llm_qa={"per_entity": per_entity or 3, "system_prompt": system_prompt}, llm=llm, curation=curation,
    )
    report = run_build(KGQABuilder(), cfg, command=_command_line(inputs, out), progress=progress_bars,
                       executor=common.executor())
    build_summary(f"build-kg-qa {out}", report.manifest,
                  report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-kg-qa")(build_options(KGQAConfig, omit=("limit",))(curation_options(llm_options(build_kg_qa))))
