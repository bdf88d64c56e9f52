"""Console output shared by commands: progress bars and the end-of-command summary table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=False, soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def progress() -> Progress:
    """A progress bar that stays quiet when stderr is not a terminal (CI logs stay readable)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
        transient=False,
    )


@contextmanager
def progress_bars(desc: str, total: int) -> Iterator[Callable[[int, str], None]]:
    """A `medmill.builders.core.progress.Progress` drawing one rich bar per call."""
    with progress() as bar:
        task = bar.add_task(desc, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            if status:
                bar.update(task, advance=n, status=status)
            else:
                bar.advance(task, n)

        yield advance


def summary_table(title: str, rows: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right")
    items = rows.items() if isinstance(rows, Mapping) else rows
    for key, value in items:
        if isinstance(value, float):
            value = f"{value:,.2f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(str(key), str(value))
    console.print(table)


def build_summary(title: str, manifest: Any, extra: Iterable[tuple[str, Any]] = (), started: float | None = None) -> None:
    """The table every build prints at its end: inputs, records per split, rejects by reason, time
    (the manifest's, which stops when writing starts, and with `started`, a `perf_counter` value taken
    when the command began, the command's wall time including the write)."""
    rows: list[tuple[str, Any]] = list(extra)
    for split, info in manifest.splits.items():
        rows.append((f"records in {split}", info.records))
    rows.append(("records written", manifest.records_total))
    rows.append(("rejects", manifest.rejects_total))
    for reason, n in manifest.rejects_by_reason.items():
        rows.append((f"  rejected: {reason}", n))
    guarded = (getattr(manifest, "curation", None) or {}).get("dedup", {}).get("fact_guarded_pairs")
    if guarded:
        rows.append(("dedup: kept as different facts (pairs)", guarded))
    if not any(str(name).startswith("records/s") for name, _ in rows):
        rows += stage_rates(manifest)
    if "total" in manifest.timings:
        rows.append(("time until writing (s)", float(manifest.timings["total"])))
    if started is not None:
        rows.append(("wall time incl. write (s)", time.perf_counter() - started))
    summary_table(title, rows)


def stage_rates(manifest: Any) -> list[tuple[str, Any]]:
    """records/s of each curation step, from the manifest's timings (process time of the step, summed
    over workers) and the records the step was given."""
    curation = getattr(manifest, "curation", None) or {}
    rows: list[tuple[str, Any]] = []
    for name, seconds in manifest.timings.items():
        step = name.removeprefix("curate.")
        n = curation.get(step, {}).get("in") if isinstance(curation.get(step), dict) else None
        if name.startswith("curate.") and n and seconds > 0:
            rows.append((f"records/s {step}", round(n / float(seconds))))
    return rows
