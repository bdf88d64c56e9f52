"""Curation over existing dataset dirs (`medmill filter`, `medmill dedup`): read the dirs, run the
curation steps, write one dataset dir that keeps each record's split."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import GlobalStep, Step, StepResult
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.inputs import finalise, load_dirs
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.schemas.dataset_dir import read_manifest
from medmill.schemas.errors import MedmillError


class KeepSplits(GlobalStep):
    """Each record goes back to the split it was read from (the marker leaves its meta)."""

    name = "finalise"

    def __call__(self, records: list) -> StepResult:
        kept, splits = finalise(records)
        return StepResult(kept, splits=splits)


def curate_dirs(
    command: str,
    dirs: list[Path],
    out: Path,
    settings: CurationSettings,
    params: dict[str, Any],
    make_steps: Callable[[str], list[Step]] | None = None,
    command_line: str | None = None,
    max_shard_bytes: int | None = None,
) -> tuple[Manifest, list[tuple[str, Any]]]:
    """Read dirs, run the curation steps (`make_steps(kind)` adds more, e.g. dedup writing
    clusters.jsonl), write with the same splits; returns the manifest and the rows of the summary table."""
    t0 = time.perf_counter()
    if any(out.resolve() == d.resolve() for d in dirs):
        raise MedmillError(f"--out {out} is one of the inputs; write to a new dir")
    loaded = load_dirs(dirs)
    # the inputs' licenses carry over: one shared license stays the dataset's, each dir's is its shards'
    licenses = {str(d): str((read_manifest(d) or {}).get("license") or "other") for d in dirs}
    shared = set(licenses.values())
    info = BuildInfo(
        license=shared.pop() if len(shared) == 1 else "other", source_licenses=licenses,
        kind=loaded.kind, builder=command, command=command_line or f"medmill {command}", params={"inputs": [str(d) for d in dirs], **params},
        inputs=sorted(f for d in dirs for f in (Path(d) / "data").glob("*.parquet")), description=f"`medmill {command}` over {', '.join(str(d) for d in dirs)}.",
    )
    if max_shard_bytes is not None:
        info.max_shard_bytes = max_shard_bytes
    steps = [*curation_steps(loaded.kind, settings), *(make_steps(loaded.kind) if make_steps else []), KeepSplits()]
    info.counters.update({f"read.{d}": n for d, n in loaded.per_dir.items()})
    manifest = finish_build(out, loaded.records, loaded.rejects, info, steps, started=t0)
    rows = [("kind", loaded.kind), ("records read", len(loaded.records) + len(loaded.rejects))]
    for name, n in sorted(manifest.counters.items()):
        if not name.startswith("read."):
            rows.append((name, n))
    return manifest, rows
