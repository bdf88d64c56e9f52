"""medmill export DIR --format F --out PATH: write a dataset dir for other trainers (JSON Lines)."""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.builders.publish.export import FORMATS, export_dir
from medmill.config import ConfigOption
from medmill.console import console, summary_table
from medmill.schemas.dataset_dir import split_files


def export(
    src: Path = typer.Argument(..., help="Dataset dir (sft, preference or pretrain)."),
    fmt: str = typer.Option(..., "--format", "-f", help=f"Target format: {', '.join(FORMATS)}."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="A .jsonl/.json file (one split), or a folder that gets one {split}.jsonl per split."
    ),
    split: str = typer.Option(
        None, "--split", help="Split to export (default: train for a file, every split for a folder; 'all' = every split)."
    ),
    name: str = typer.Option(None, "--name", help="Dataset name in LLaMA-Factory's dataset_info.json (default: dir name)."),
    config: Path = ConfigOption,
) -> None:
    """Write a dataset dir as JSON Lines for MedicalGPT, LLaMA-Factory, OpenAI or ShareGPT/Alpaca tools."""
    result = export_dir(src, fmt, out, split=split, name=name)
    rows: list[tuple[str, object]] = [("kind", result.kind), ("format", result.format)]
    rows += [(f"written: {path}", n) for path, n in result.files.items()]
    rows += [(f"skipped: {reason}", n) for reason, n in sorted(result.skipped.items())]
    if result.dataset_info:
        rows.append(("dataset_info.json", str(result.dataset_info)))
    summary_table(f"export {src}", rows)
    exported = set(result.splits)
    left = [s for s in split_files(src) if s not in exported]
    if left and split is None:  # a single-file --out takes one split by default: say what stayed behind
        console.print(
            f"only the {', '.join(sorted(exported))} split was written; not exported: {', '.join(left)} "
            "(use --split all, --split NAME, or a folder as --out)",
            highlight=False,
        )
    if result.skipped:
        console.print(
            f"{sum(result.skipped.values())} record(s) cannot be expressed in {fmt} and were not written (see 'skipped')."
        )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
