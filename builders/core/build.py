"""The end of every build: curation steps (validate -> quality -> PII/safety -> decontaminate ->
dedup) run by an executor, then the shard writer (group-aware splits, shards, card, manifest)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medmill.builders.core.collect import RejectSink
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import LocalExecutor, RunResult, Step
from medmill.builders.core.writer import (
    BuildInfo,
    CardRenderer,
    failed_rejects_path,
    unique_rows,
    write_dataset_dir,
    write_failed_rejects,
)
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
    """Run curation `steps` over `records`, record what they did, and write the dataset dir
    (`curate` then `write_build`; run_build calls the two itself to describe the build in between).

    `started` (a `time.perf_counter()` value taken when the build began) sets `timings["total"]`
    to the time from then until the write starts, curation included. A build that keeps no record
    raises MedmillError unless `allow_empty`, leaving `out_dir` untouched and its rejects beside it.
    `render_card` defaults to the Hub card of medmill.builders.publish.card."""
    own_sink = not isinstance(rejects, RejectSink)
    sink = RejectSink() if own_sink else rejects
    try:
        if own_sink:
            sink.extend(rejects)  # type: ignore[arg-type]
        result = curate(records, sink, info, steps, executor)  # type: ignore[arg-type]
        return write_build(out_dir, result, sink, info, started=started, allow_empty=allow_empty, render_card=render_card)
    finally:
        if own_sink:
            sink.close()


def curate(
    records: Sequence[Record], sink: RejectSink, info: BuildInfo, steps: Sequence[Step] = (),
    executor: LocalExecutor | None = None,
) -> RunResult:
    """Run `steps` over `records` (rejects into `sink`), note what they did in `info` (counters, curation
    stats, extra files, splits, timings `curate.*`), then drop repeated ids (exact duplicates, stage
    `write`): the result holds exactly the records the dataset dir will hold."""
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
    result.records, duplicates = unique_rows(result.records)
    sink.extend(duplicates)
    info.timings["curate"] = time.perf_counter() - t0
    return result


def write_build(
    out_dir: Path,
    result: RunResult,
    sink: RejectSink,
    info: BuildInfo,
    *,
    started: float | None = None,
    allow_empty: bool = False,
    render_card: CardRenderer | None = None,
) -> Manifest:
    """Write the curated records of `result` (see `finish_build` for `started` and `allow_empty`), then
    run the steps' commit actions (e.g. growing a dedup index) once the dir is safely in place."""
    if render_card is None:
        from medmill.builders.publish.card import render_card
    if started is not None:
        info.timings["total"] = time.perf_counter() - started
    if not result.records and not allow_empty:
        raise _no_records_survived(out_dir, sink)
    t1 = time.perf_counter()
    manifest = write_dataset_dir(out_dir, result.records, sink, info, render_card)
    info.timings["write"] = time.perf_counter() - t1
    for commit in result.on_commit:
        commit()
    remove_stale_failed_rejects(out_dir)
    return manifest


def _no_records_survived(out_dir: Path, sink: RejectSink) -> MedmillError:
    """A build that kept nothing fails without touching --out (a previous dataset there stays as it
    was); its rejects go beside it so the user can read why."""
    return no_records_error(out_dir, sink.by_reason, write_failed_rejects(out_dir, sink))


def no_records_error(out_dir: Path, by_reason: Mapping[str, int], rejects_at: Path | None) -> MedmillError:
    """The error of a build that kept nothing; `rejects_at` is where its rejects were written (None: nowhere)."""
    top = sorted(by_reason.items(), key=lambda kv: -kv[1])[:3]
    why = ", ".join(f"{k} {v}" for k, v in top) or "no input records"
    see = f"its rejects are in {rejects_at}" if rejects_at else "its rejects could not be written beside --out"
    return MedmillError(f"no records survived the build ({why}); {out_dir} was left as it was; {see}")


def remove_stale_failed_rejects(out_dir: Path) -> None:
    """After a successful build, the rejects of an earlier failed build into the same dir are stale."""
    path = failed_rejects_path(out_dir)
    if path.is_file():
        path.unlink(missing_ok=True)
