"""medmill build-kg-qa INPUT... --out DIR: a medical knowledge graph -> question/answer SFT records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.commands._common import option_error, parse_source_licenses
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.config import ConfigOption
from medmill.console import build_summary, progress
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

MODES = ("template", "llm")


def _command_line(inputs: list[Path], out: Path) -> str:
    return invocation(["build-kg-qa", *map(str, inputs), "--out", str(out)])


@contextmanager
def _entity_bar(total: int) -> Iterator[Callable[[], None]]:
    with progress() as bar:
        task = bar.add_task("questions", total=total, status="entities")
        yield lambda: bar.advance(task)


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
    config: Path | None = ConfigOption,
    *,
    curation: CurationSettings,
    llm: LLMSettings,
) -> None:
    """Turn a medical knowledge graph into question/answer pairs (templates, every fact from the KG)."""
    from pydantic import ValidationError

    from medmill.builders.kg_qa.build import KGQABuild, run_kg_qa
    from medmill.builders.kg_qa.template_qa import TemplateQAConfig

    t0 = time.perf_counter()
    if mode not in MODES:
        raise MedmillError(f"unknown --mode {mode!r}; available: {', '.join(MODES)}")
    if val_size + test_size >= 1.0:
        raise MedmillError("--val-size plus --test-size must be below 1")
    if mode == "llm" or mix:
        from medmill.builders.kg_qa.scenario_qa import KGQALLMBuild, LLMQAConfig, parse_mix, run_kg_qa_llm

        try:
            llm_cfg = KGQALLMBuild(
                inputs=inputs, out=out, mix=parse_mix(mix) or {"llm": 1.0}, seed=seed, templates=templates,
                qa=LLMQAConfig(per_entity=per_entity or 3, system_prompt=system_prompt),
                template_qa=TemplateQAConfig(per_entity=per_entity, seed=seed, system_prompt=system_prompt,
                                             combined=combined, reverse=reverse),
                val_size=val_size, test_size=test_size, license=license,
                source_licenses=parse_source_licenses(source_license), llm=llm, curation=curation,
            )
        except ValidationError as e:
            raise option_error(e) from None
        manifest, figures = run_kg_qa_llm(llm_cfg, command=_command_line(inputs, out))
        build_summary(f"build-kg-qa {out}", manifest, [*figures.items(), ("wall time incl. write (s)", time.perf_counter() - t0)])
        return
    try:
        cfg = KGQABuild(
            inputs=inputs,
            out=out,
            mode=mode,
            templates=templates,
            qa=TemplateQAConfig(
                per_entity=per_entity, seed=seed, system_prompt=system_prompt, combined=combined, reverse=reverse
            ),
            val_size=val_size,
            test_size=test_size,
            license=license,
            source_licenses=parse_source_licenses(source_license),
            curation=curation,
        )
    except ValidationError as e:
        raise option_error(e) from None
    manifest, figures = run_kg_qa(cfg, command=_command_line(inputs, out), progress=_entity_bar)
    extra = list(figures.items())
    extra.append(("wall time incl. write (s)", time.perf_counter() - t0))
    build_summary(f"build-kg-qa {out}", manifest, extra)


def register(app: typer.Typer) -> None:
    app.command("build-kg-qa")(curation_options(llm_options(build_kg_qa)))
