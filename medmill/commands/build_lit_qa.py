"""medmill build-lit-qa INPUT... --out DIR: literature conclusions -> grounded QA or patient-doctor dialogues (sft)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Literal

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.lit_qa.build import LitQAConfig
from medmill.builders.llm.types import LLMSettings
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError


def _turn_range(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value)
    if not m:
        raise MedmillError(f"--turns {value!r}: expected N or MIN-MAX, e.g. 2-4")
    low = int(m.group(1))
    return low, int(m.group(2) or low)


def build_lit_qa(
    inputs: list[Path] = typer.Argument(
        ..., help="Literature records: JSON arrays, JSON Lines or CSV with title and conclusion (else the 结论 / "
        "Conclusions part of a structured abstract; optional abstract, year, journal, doi, keywords); files or directories."
    ),
    out: str = OutOption,
    style: Literal["qa", "dialogue"] = typer.Option("qa", "--style", help="qa: question-answer pairs; dialogue: multi-turn patient-doctor conversations."),
    turns: str = typer.Option("2-4", "--turns", help="dialogue: patient turns per conversation, N or MIN-MAX."),
    per_paper: int | None = typer.Option(None, "--per-paper", min=1, max=20, help="qa: pairs per paper (default 3); dialogue: dialogues per paper (default 1)."),
    field: list[str] = typer.Option([], "--field", help="Map a field to your column: title=题目, conclusion=结论, year=年份 ...; repeatable."),
    min_overlap: float | None = typer.Option(None, "--min-overlap", min=0.0, max=1.0, help="Least share of answer (qa, default 0.5) or doctor-turn (dialogue, default 0.35) character bigrams found in the paper."),
    common: CommonBuildOptions = GENERATED,
    *,
    llm: LLMSettings,
    curation: CurationSettings,
) -> None:
    """Turn literature conclusions into grounded QA pairs or patient-doctor dialogues that cite the paper."""
    from medmill.builders.core.run import run_build
    from medmill.builders.lit_qa.build import LitQABuilder
    from medmill.builders.readers.literature import parse_field_map

    t0 = time.perf_counter()
    low, high = _turn_range(turns)
    options: dict = {"style": style, "turns_min": low, "turns_max": high}
    if style == "qa":
        options["pairs_per_paper"] = per_paper or 3
        if min_overlap is not None:
            options["min_overlap"] = min_overlap
    else:
        options["dialogues_per_paper"] = per_paper or 1
        if min_overlap is not None:
            options["dialogue_min_overlap"] = min_overlap
    cfg = common.config(
        LitQAConfig,
        inputs=inputs,
        out=out,
        field_map=parse_field_map(field),
        lit=options,
        llm=llm,
        curation=curation,
    )
    command = invocation(["build-lit-qa", *map(str, inputs), "--out", str(out), "--style", style])
    report = run_build(LitQABuilder(), cfg, command=command, progress=progress_bars, executor=common.executor())
    build_summary(f"build-lit-qa {out}", report.manifest, report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-lit-qa")(build_options(LitQAConfig, omit=("source_licenses",))(curation_options(llm_options(build_lit_qa))))
