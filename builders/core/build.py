"""The end of every build: curation steps (validate -> quality -> PII/safety -> decontaminate ->
dedup) run by an executor, then the shard writer (group-aware splits, shards, card, manifest)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medmill.builders.core.collect import RejectSink
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import LocalExecutor, Step
from medmill.builders.core.writer import BuildInfo, CardRenderer, write_dataset_dir
from medmill.schemas import Record, RejectRow
from medmill.schemas.errors import MedmillError


def finish_build(
    out_dir: Path,
    records: Sequence[Record],
    rejects: RejectSink | Sequence[RejectRow],
    info: BuildInfo,
    steps: Sequence[Step] = (),
    *,
    started: float | None = None,
    allow_empty: bool = False,
    executor: LocalExecutor | None = None,
    render_card: CardRenderer | None = None,
) -> Manifest:
    """Run curation `steps` over `records`, record what they did, and write the dataset dir.

    `started` (a `time.perf_counter()` value taken when the build began) sets `timings["total"]`
    to the time from then until the write starts, curation included. A build that keeps no record
    is written (so its rejects can be read) and then raises MedmillError unless `allow_empty`.
    `render_card` defaults to the Hub card of medmill.builders.publish.card."""
    if render_card is None:
        from medmill.builders.publish.card import render_card
    own_sink = not isinstance(rejects, RejectSink)
    sink = RejectSink() if own_sink else rejects
    try:
        if own_sink:
            sink.extend(rejects)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        result = (executor or LocalExecutor()).run(list(records), list(steps), sink)
        info.counters.update(result.counters)
        curation: dict[str, Any] = dict(info.curation)
        curation.update(result.stats)
        info.curation = curation
        info.extra_files.update(result.files)
        if result.splits is not None:
            info.fixed_splits = result.splits
        for name, seconds in result.timings.items():
            info.timings[f"curate.{name}"] = seconds
        info.timings["curate"] = time.perf_counter() - t0
        if started is not None:
            info.timings["total"] = time.perf_counter() - started
        t1 = time.perf_counter()
        manifest = write_dataset_dir(out_dir, result.records, sink, info, render_card)
        info.timings["write"] = time.perf_counter() - t1
    finally:
        if own_sink:
            sink.close()
    for commit in result.on_commit:
        commit()
    if manifest.records_total == 0 and not allow_empty:
        # the dir is written (its rejects say why), but a build that kept nothing must not look like success
        top = sorted(manifest.rejects_by_reason.items(), key=lambda kv: -kv[1])[:3]
        why = ", ".join(f"{k} {v}" for k, v in top) or "no input records"
        raise MedmillError(f"no records survived the build ({why}); see {Path(out_dir) / 'rejects.jsonl'}")
    return manifest
