"""The end of every build: curation stages (validate -> quality -> PII/safety -> dedup), then the
shard writer. Builders call `finish_build` with their records and rejects."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medmill.builders.core.manifest import Manifest
from medmill.builders.core.pipeline import LocalExecutor, Step
from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.publish.card import render_card
from medmill.schemas import Record, RejectRow
from medmill.schemas.errors import MedmillError


def finish_build(
    out_dir: Path,
    records: Sequence[Record],
    rejects: Sequence[RejectRow],
    info: BuildInfo,
    steps: Sequence[Step] = (),
    *,
    started: float | None = None,
    allow_empty: bool = False,
) -> Manifest:
    """Run curation `steps` over `records`, record what they did, and write the dataset dir.

    `started` (a `time.perf_counter()` value taken when the build began) sets `timings["total"]`
    to the time from then until the write starts, curation included. A build that keeps no record
    is written (so its rejects can be read) and then raises MedmillError unless `allow_empty`."""
    t0 = time.perf_counter()
    result = LocalExecutor().run(list(records), list(steps))
    all_rejects = list(rejects) + result.rejects
    info.counters.update(result.counters)
    curation: dict[str, Any] = dict(info.curation)
    for name, stats in result.stats.items():
        curation[name] = stats
    info.curation = curation
    for name, seconds in result.timings.items():
        info.timings[f"curate.{name}"] = seconds
    info.timings["curate"] = time.perf_counter() - t0
    if started is not None:
        info.timings["total"] = time.perf_counter() - started
    t1 = time.perf_counter()
    manifest = write_dataset_dir(out_dir, result.records, all_rejects, info, render_card)
    info.timings["write"] = time.perf_counter() - t1
    for commit in result.on_commit:
        commit()
    if manifest.records_total == 0 and not allow_empty:
        # the dir is written (its rejects say why), but a build that kept nothing must not look like success
        top = sorted(manifest.rejects_by_reason.items(), key=lambda kv: -kv[1])[:3]
        why = ", ".join(f"{k} {v}" for k, v in top) or "no input records"
        raise MedmillError(f"no records survived the build ({why}); see {Path(out_dir) / 'rejects.jsonl'}")
    return manifest
