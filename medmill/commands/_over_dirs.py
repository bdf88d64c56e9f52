"""Shared by `medmill filter` and `medmill dedup`: curate dataset dirs with the chosen executor and
print the summary table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medmill.builders.streaming.options import RunOptions
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

if TYPE_CHECKING:
    from medmill.builders.core.manifest import Manifest
    from medmill.builders.core.steps import Step
    from medmill.builders.curation.settings import CurationSettings


def run_over_dirs(command: str, dirs: list[Path], out: Path, settings: CurationSettings, params: dict[str, Any],
                  make_steps: Callable[[str], list[Step]] | None = None, run: RunOptions | None = None) -> Manifest:
    """Curate dataset dirs into `out` and print the summary table (shared by filter and dedup).

    The same steps run on every executor: "local" (default) streams them through processes in bounded
    memory, "ray" on a Ray cluster, "memory" holds every record (the reference the others equal)."""
    run = run or RunOptions()
    line = invocation([command, *dirs, "--out", out])
    if run.executor == "memory":
        from medmill.builders.curation.over_dirs import curate_dirs
        from medmill.builders.streaming.outputs import as_uri

        if as_uri(out):
            raise MedmillError(f"--out {out}: writing to a URI needs --executor local or ray")
        manifest, rows = curate_dirs(command, dirs, out, settings, params, make_steps, command_line=line,
                                     max_shard_bytes=run.max_shard_bytes)
    else:
        from medmill.builders.streaming.over_dirs import stream_curate_dirs

        manifest, rows, _ = stream_curate_dirs(command, dirs, out, settings, params, run, make_steps, line, progress_bars)
    build_summary(f"{command} {out}", manifest, rows)
    return manifest
