"""medmill report DIR... --out report.html: look at dataset dirs before training on them."""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.builders.publish.report import write_report
from medmill.config import ConfigOption
from medmill.console import console


def report(
    dirs: list[Path] = typer.Argument(..., help="Dataset dir(s); several give a comparison page."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    title: str = typer.Option(None, "--title", help="Page title (default: the dir names)."),
    config: Path = ConfigOption,
) -> None:
    """Write one self-contained HTML page: counts, lengths, categories, sample chats, rejects,
    duplicate clusters, PII/safety findings."""
    path = write_report(dirs, out, title)
    console.print(f"wrote {path} ({path.stat().st_size:,} bytes) for {len(dirs)} dataset dir(s)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
