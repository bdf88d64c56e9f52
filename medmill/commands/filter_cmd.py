"""medmill filter DIR... --out DIR: quality rules, PII redaction, safety lexicon and decontamination
over existing dataset dirs; splits are kept, every drop is a reject row naming its rule."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._curate_dirs import run_over_dirs
from medmill.commands._curation_options import FILTER_FIELDS, curation_options
from medmill.commands._run_options import (
    ExecutorOption,
    OutOption,
    RayAddressOption,
    RunOptions,
    WorkersOption,
)
from medmill.config import ConfigOption


def filter_dirs(
    dirs: list[Path] = typer.Argument(..., help="Dataset dir(s) of one record kind."),
    out: str = OutOption,
    workers: int = WorkersOption,
    executor: str = ExecutorOption,
    ray_address: str = RayAddressOption,
    config: Path | None = ConfigOption,
    *,
    curation: CurationSettings,
) -> None:
    """Filter dataset dirs: quality rules, PII, safety lexicon, decontamination."""
    run_over_dirs("filter", dirs, out, curation, params={"settings": json.loads(curation.model_dump_json())},
                  run=RunOptions(executor, workers, ray_address))


def register(app: typer.Typer) -> None:
    app.command("filter")(curation_options(filter_dirs, fields=FILTER_FIELDS, fixed={"validate_records": False, "dedup": False}))
