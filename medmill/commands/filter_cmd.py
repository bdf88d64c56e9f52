"""medmill filter DIR... --out DIR: quality rules, PII redaction, safety lexicon and decontamination
over existing dataset dirs; splits are kept, every drop is a reject row naming its rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medmill.commands._over_dirs import run_over_dirs
from medmill.commands._run_options import ExecutorOption, RayAddressOption, RunOptions, WorkersOption
from medmill.config import ConfigOption
from medmill.schemas.errors import MedmillError

if TYPE_CHECKING:
    pass


def filter_dirs(
    dirs: list[Path] = typer.Argument(..., help="Dataset dir(s) of one record kind."),
    out: Path = typer.Option(..., "--out", help="Output dataset dir."),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="Quality rules."),
    min_chars: int = typer.Option(2, "--min-chars", help="Shortest answer kept (characters)."),
    max_chars: int = typer.Option(50_000, "--max-chars", help="Longest answer kept (characters)."),
    min_cjk_share: float = typer.Option(0.0, "--min-cjk-share", help="Least share of CJK among letters (0 = off)."),
    strip_boilerplate: bool = typer.Option(True, "--strip-boilerplate/--keep-boilerplate", help="Strip greeting/sign-off boilerplate from answers."),
    pii: bool = typer.Option(True, "--pii/--no-pii", help="PII detection."),
    pii_action: str = typer.Option("redact", "--pii-action", help="redact (typed placeholders) or drop."),
    pii_types: str = typer.Option("", "--pii-types", help="Comma-separated subset of PHONE,ID_CARD,EMAIL,IP,URL,BANK_CARD,PATIENT_ID."),
    safety: bool = typer.Option(True, "--safety/--no-safety", help="Safety lexicon."),
    safety_lexicon: list[Path] = typer.Option([], "--safety-lexicon", help="Extra lexicon file (yaml/txt); repeatable."),
    safety_flag_only: bool = typer.Option(False, "--safety-flag-only", help="Flag every category instead of dropping."),
    decontaminate: list[Path] = typer.Option([], "--decontaminate", help="Eval set (dataset dir, JSON/JSONL/CSV); repeatable."),
    decontam_ngram: int = typer.Option(13, "--decontam-ngram", help="Shared character n-gram length that counts as contamination."),
    decontam_field: str = typer.Option("", "--decontam-field", help="Eval field/column to read (default: all text fields)."),
    workers: int = WorkersOption,
    executor: str = ExecutorOption,
    ray_address: str = RayAddressOption,
    config: Path | None = ConfigOption,
) -> None:
    """Filter dataset dirs: quality rules, PII, safety lexicon, decontamination."""
    from medmill.builders.curation.settings import PII_TYPES, curation_settings

    if pii_action not in ("redact", "drop"):
        raise MedmillError(f"--pii-action must be redact or drop, got {pii_action!r}")
    types = [t.strip().upper() for t in pii_types.split(",") if t.strip()] or list(PII_TYPES)
    unknown = sorted(set(types) - set(PII_TYPES))
    if unknown:
        raise MedmillError(f"--pii-types: unknown {', '.join(unknown)}; known: {', '.join(PII_TYPES)}")
    for p in [*safety_lexicon, *decontaminate]:
        if not p.exists():
            raise MedmillError(f"file not found: {p}")
    settings = curation_settings(
        validate_records=False,
        quality=quality, min_chars=min_chars, max_chars=max_chars, min_cjk_share=min_cjk_share,
        strip_boilerplate=strip_boilerplate, pii=pii, pii_action=pii_action, pii_types=types, safety=safety,
        lexicons=list(safety_lexicon), safety_flag_only=safety_flag_only, dedup=False,
        decontaminate=list(decontaminate), decontam_ngram=decontam_ngram, decontam_field=decontam_field or None,
    )
    run_over_dirs("filter", dirs, out, settings, params={"settings": json.loads(settings.model_dump_json())},
                  run=RunOptions(executor, workers, ray_address))


def register(app: typer.Typer) -> None:
    app.command("filter")(filter_dirs)
