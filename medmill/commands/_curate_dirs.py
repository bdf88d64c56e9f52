"""The path `medmill filter` and `medmill dedup` share: dataset dirs -> the curation steps on the chosen
executor -> the summary table.

The same steps run on every executor: "local" (default) streams them through processes in bounded
memory, "ray" on a Ray cluster, "memory" holds every record and runs them with `run_build` (the
reference the other two equal byte for byte)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medmill.builders.streaming.options import RunOptions
from medmill.commands._common import build_config
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation

if TYPE_CHECKING:
    from medmill.builders.core.manifest import Manifest
    from medmill.builders.core.steps import Step
    from medmill.builders.curation.settings import CurationSettings


def run_over_dirs(command: str, dirs: list[Path], out: str | Path, settings: CurationSettings, params: dict[str, Any],
                  extra_steps: Callable[[str], list[Step]] | None = None, run: RunOptions | None = None) -> Manifest:
    """Curate dataset dirs into `out` and print the summary table."""
    t0 = time.perf_counter()
    run = run or RunOptions()
    line = invocation([command, *dirs, "--out", out])
    if run.executor == "memory":
        from medmill.builders.core.run import run_build
        from medmill.builders.curation.over_dirs import CurateDirsBuilder, CurateDirsConfig

        cfg = build_config(CurateDirsConfig, inputs=dirs, out=out, curation=settings, params=params)
        report = run_build(CurateDirsBuilder(command, extra_steps), cfg, command=line, progress=progress_bars,
                           max_shard_bytes=run.max_shard_bytes)
        manifest, rows = report.manifest, report.figures
    else:
        from medmill.builders.streaming.over_dirs import stream_curate_dirs

        manifest, rows, _ = stream_curate_dirs(command, dirs, out, settings, params, run, extra_steps, line, progress_bars)
    build_summary(f"{command} {out}", manifest, rows, started=t0)
    return manifest
