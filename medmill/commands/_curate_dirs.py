"""The build path `medmill filter` and `medmill dedup` share: dataset dirs -> run_build with the
curate-dirs builder -> the summary table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medmill.commands._common import build_config
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation

if TYPE_CHECKING:
    from medmill.builders.core.manifest import Manifest
    from medmill.builders.core.steps import Step
    from medmill.builders.curation.settings import CurationSettings


def run_over_dirs(command: str, dirs: list[Path], out: Path, settings: CurationSettings, params: dict[str, Any],
                  extra_steps: Callable[[str], list[Step]] | None = None) -> Manifest:
    """Curate dataset dirs into `out` with run_build and print the summary table."""
    from medmill.builders.core.run import run_build
    from medmill.builders.curation.over_dirs import CurateDirsBuilder, CurateDirsConfig

    cfg = build_config(CurateDirsConfig, inputs=dirs, out=out, curation=settings, params=params)
    report = run_build(CurateDirsBuilder(command, extra_steps), cfg, command=invocation([command, *dirs, "--out", out]),
                       progress=progress_bars)
    build_summary(f"{command} {out}", report.manifest, report.figures)
    return report.manifest
