"""`medmill filter` / `medmill dedup` streamed: the same dataset dir `curation.over_dirs.curate_dirs`
writes, in bounded memory, on local processes or on Ray."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medmill.builders.core.manifest import Manifest
from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.core.steps import Step
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.inputs import dirs_kind
from medmill.builders.curation.over_dirs import KeepSplits
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.streaming.inputs import count_rows
from medmill.builders.streaming.options import RunOptions
from medmill.builders.streaming.outputs import staged_output
from medmill.builders.streaming.run import StreamRun
from medmill.schemas.dataset_dir import read_manifest


def _info(command: str, dirs: list[Path], kind: str, params: dict[str, Any], command_line: str | None) -> BuildInfo:
    # the inputs' licenses carry over: one shared license stays the dataset's, each dir's is its shards'
    licenses = {str(d): str((read_manifest(d) or {}).get("license") or "other") for d in dirs}
    shared = set(licenses.values())
    return BuildInfo(
        license=shared.pop() if len(shared) == 1 else "other", source_licenses=licenses,
        kind=kind, builder=command, command=command_line or f"medmill {command}", params={"inputs": [str(d) for d in dirs], **params},
        inputs=sorted(f for d in dirs for f in (Path(d) / "data").glob("*.parquet")), fixed_splits={},
        description=f"`medmill {command}` over {', '.join(str(d) for d in dirs)}.",
    )


def stream_curate_dirs(
    command: str,
    dirs: list[Path],
    out: str | Path,
    settings: CurationSettings,
    params: dict[str, Any],
    run: RunOptions,
    make_steps: Callable[[str], list[Step]] | None = None,
    command_line: str | None = None,
    progress: Progress = no_progress,
) -> tuple[Manifest, list[tuple[str, Any]], StreamRun]:
    """Curate `dirs` into `out` (a path or a pyarrow filesystem URI) with the curation steps plus
    `make_steps(kind)` (the same steps `curate_dirs` runs in memory). Returns the manifest, the summary rows (records/s per stage included) and the run."""
    t0 = time.perf_counter()
    with staged_output(out, dirs) as local_out:  # checks --out against the inputs first
        kind = dirs_kind(dirs)
        info = _info(command, dirs, kind, params, command_line)
        info.max_shard_bytes = run.max_shard_bytes
        steps = [*curation_steps(kind, settings), *(make_steps(kind) if make_steps else []), KeepSplits()]
        if run.executor == "ray":
            from medmill.builders.streaming.ray_executor import run_on_ray

            result = run_on_ray(dirs, local_out, kind, steps, info, run.workers, run.ray_address, run.batch_rows, started=t0)
        else:
            from medmill.builders.streaming.run import run_streaming

            total = count_rows(dirs)
            with progress(f"{command} (streaming, {run.process_count()} processes)", total) as advance:
                result = run_streaming(dirs, local_out, kind, steps, info, run.process_count(), run.batch_rows,
                                       started=t0, on_batch=lambda n: advance(n, ""))
    manifest = result.manifest
    workers = run.process_count() if run.executor != "ray" else (run.workers or "all cluster CPUs")
    rows: list[tuple[str, Any]] = [("kind", kind), ("records read", result.records_read), ("executor", f"{run.executor}, {workers} workers")]
    for name, n in sorted(manifest.counters.items()):
        if not name.startswith("read."):
            rows.append((name, n))
    for stage, n, secs in result.stage_rates:
        rows.append((f"records/s {stage}", round(n / secs) if secs > 0 else n))
    return manifest, rows, result
