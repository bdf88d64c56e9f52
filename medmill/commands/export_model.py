"""`medmill export-model`: merge a LoRA adapter (or re-save full weights) into a standalone model dir."""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.console import summary_table


def export_model(
    model: Path = typer.Option(..., "--model", help="A `medmill train` output or checkpoint dir."),
    out: Path = typer.Option(..., help="Where to write the merged model."),
    base: str | None = typer.Option(None, help="Base model of a LoRA adapter (default: the one the adapter records)."),
    dtype: str = typer.Option("auto", help="auto (as saved), float32, bfloat16 or float16."),
) -> None:
    """Write weights + tokenizer + chat template + generation config; a reward model stays a one-label
    AutoModelForSequenceClassification."""
    from medmill.trainers.export import export_model as run

    report = run(model, out, base=base, dtype=dtype)
    summary_table(
        "medmill export-model",
        [("output", report.out), ("kind", report.kind), ("merged LoRA adapter", report.merged_adapter),
         ("base", report.base or "-"), ("parameters", report.parameters)],
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("export-model")(export_model)
