"""medmill validate DIR: check every record of a dataset dir."""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.builders.core.validate import validate_dir
from medmill.console import console, summary_table


def validate(
    dirs: list[Path] = typer.Argument(..., help="Dataset dir(s) to check."),
    show: int = typer.Option(20, "--show", help="How many problems to print per dir."),
) -> None:
    """Check every record of dataset dirs against their kind's schema; print counts and first problems."""
    failed = False
    for d in dirs:
        report = validate_dir(d, keep=show)
        rows = [("kind", report.kind)]
        rows += [(f"records in {s}", n) for s, n in sorted(report.records.items())]
        rows += [("invalid records", report.invalid), ("duplicate ids", report.duplicate_ids)]
        summary_table(f"validate {d}", rows)
        for p in report.problems:
            console.print(f"  {p.split}/{p.file} row {p.row} id={p.record_id}: {p.message}", highlight=False)
        for line in report.manifest_mismatch:
            console.print(f"  manifest: {line}", highlight=False)
        if report.ok:
            console.print(f"OK: {d} ({sum(report.records.values())} records)")
        else:
            failed = True
            console.print(f"FAILED: {d}")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
