"""`run_build(builder, cfg)`: the one way a build runs, for every builder.

read (never the build's own out dir or LLM cache) -> generate (the builder's generation steps, run
by the executor: item-wise map steps batch by batch, or a global step through the LLM engine) -> curation steps (map steps per batch, then global steps) -> the builder's final
statistics (`finish`) and card text (`describe`), with the records to be written -> splits -> write
-> summary figures. Rejects of every stage stream into one `RejectSink`; the manifest gets the
builder's name and version, the typed config as params, and timings from the start of the build.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from medmill.builders.core.build import curate, write_build
from medmill.builders.core.builder import BuildContext, Builder, C, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.core.steps import LocalExecutor, RunResult
from medmill.builders.core.writer import BuildInfo, CardRenderer
from medmill.builders.readers.walk import nested_dataset_dirs
from medmill.builders.streaming.outputs import local_path, local_state_dir, staged_output


@dataclass
class BuildReport:
    """What a finished build returns: its manifest and the rows of the summary table."""

    manifest: Manifest
    figures: list[tuple[str, Any]]


def run_build(
    builder: Builder[C],
    cfg: C,
    *,
    command: str | None = None,
    progress: Progress = no_progress,
    executor: LocalExecutor | None = None,
    render_card: CardRenderer | None = None,
    max_shard_bytes: int | None = None,
) -> BuildReport:
    """Build the dataset dir `cfg.out` with `builder`; see the module docstring.

    `cfg.out` is a local path or a pyarrow filesystem URI (builders/streaming/outputs.py: built in a local
    staging dir, published when complete; the LLM request cache then defaults to `local_state_dir`).
    `command` is the command line the manifest records (default `medmill build-<name>`); a build
    that keeps no record is written (its rejects say why) and then raises MedmillError.
    `max_shard_bytes` overrides the writer's shard size (tests use it to get many shards).
    With a `StreamExecutor` (`--executor local`) or a `RayExecutor` (`--executor ray`), a builder that
    offers its items as a stream (`Builder.read_stream`) builds streamed (builders/streaming/build_stream.py):
    the same dataset dir in bounded memory; every other build runs here, in memory."""
    t0 = time.perf_counter()
    with staged_output(cfg.out, cfg.inputs) as local_out:  # checks --out against the inputs; a URI: staged
        staged = cfg if local_out == cfg.out else cfg.model_copy(update={"out": local_out})
        state_dir = local_state_dir(cfg.out)
        # the readers skip the dir written, the out dir itself (file://) and the request cache's dir
        own_paths = builder.own_paths(staged) + [p for p in (local_path(cfg.out), state_dir) if p is not None]
        ctx = BuildContext(local_out, progress, own_paths, state_dir=state_dir)
        report = _run_build(builder, staged, ctx, command, executor, render_card, max_shard_bytes, t0)
    if state_dir is not None and (state_dir / "llm_cache.sqlite").is_file():  # where a rerun into the URI resumes from
        report.figures.append(("request cache (local)", str(state_dir / "llm_cache.sqlite")))
    return report


def _run_build(builder: Builder[C], cfg: C, ctx: BuildContext, command: str | None, executor: LocalExecutor | None,
               render_card: CardRenderer | None, max_shard_bytes: int | None, t0: float) -> BuildReport:
    skipped_dirs = nested_dataset_dirs(cfg.inputs)  # the readers leave these out (builders/readers/walk.py)
    from medmill.builders.streaming.build_stream import builder_streams, stream_build

    if builder_streams(builder, executor, render_card):
        streamed = stream_build(builder, cfg, ctx, executor, command, max_shard_bytes, t0, skipped_dirs)  # type: ignore[arg-type]
        if streamed is not None:
            return BuildReport(*streamed)
    out = Collector()
    try:
        inputs = builder.read(cfg, ctx)
        out.rejects.extend(inputs.rejects)
        t1 = time.perf_counter()
        executor = executor or LocalExecutor()
        protected = builder.protected_terms(cfg, inputs)  # from the items, before generation takes them
        generated = generate(builder, cfg, inputs, ctx, out, executor)
        t2 = time.perf_counter()
        out.generated = len(out.records)
        counters = Counter(inputs.counters)
        counters.update(out.counters)
        if skipped_dirs:
            counters["read.dataset_dirs_skipped"] = len(skipped_dirs)
        kind = inputs.kind or builder.kind
        info = BuildInfo(
            kind=kind,
            builder=builder.name,
            command=command or f"medmill build-{builder.name}",
            params=builder.params(cfg),
            inputs=list(inputs.files),
            seed=cfg.seed,
            val_size=cfg.val_size,
            test_size=cfg.test_size,
            license=builder.license(cfg, inputs),
            source_licenses=builder.source_licenses(cfg, inputs),
            counters=counters,
            prompts=out.prompts,
            llm=out.llm,
            usage=out.usage,
            timings={"read": t1 - t0, "generate": t2 - t1},
        )
        if max_shard_bytes is not None:
            info.max_shard_bytes = max_shard_bytes
        steps = builder.steps(cfg, kind, protected)
        info.extra_files.update(generated.files)
        result = curate(out.records, out.rejects, info, steps, executor)
        result.on_commit[:0] = generated.on_commit
        out.records = result.records  # what will be written: finish/describe/figures see final figures
        builder.finish(cfg, inputs, out)
        info.stats = dict(out.stats)
        info.description = builder.describe(cfg, inputs, out)
        manifest = write_build(cfg.out, result, out.rejects, info, started=t0, render_card=render_card)
    finally:
        out.rejects.close()
    figures = list(builder.figures(cfg, inputs, out, manifest))
    if skipped_dirs:
        figures.append(("dataset dirs skipped (inside inputs)", len(skipped_dirs)))
    return BuildReport(manifest, figures)


def generate(builder: Builder[C], cfg: C, inputs: Inputs, ctx: BuildContext, out: Collector, executor: LocalExecutor) -> RunResult:
    """The builder's generation steps over `inputs.items`, run by `executor` (map steps batch by batch,
    a progress bar per map stage; global steps once, in the driver); the records land in `out.records`,
    rejects in `out.rejects`, the steps' counters in `out.counters` without their step prefix."""
    steps = builder.generation(cfg, inputs, ctx, out)
    result = executor.run(_hand_over(inputs), steps, out.rejects, progress=ctx.progress)
    if result.splits is not None:
        raise ValueError(f"{builder.name}: generation steps may not decide splits (a curation step does)")
    prefixes = [f"{step.name}." for step in steps]
    for key, n in result.counters.items():
        out.counters[next(key[len(p):] for p in prefixes if key.startswith(p))] += n
    for step in steps:  # what a step reports beyond its sizes is a table of the builder's
        out.stats.update({k: v for k, v in result.stats.get(step.name, {}).items() if k not in ("in", "out", "dropped")})
    out.records.extend(result.records)
    return result


def _hand_over(inputs: Inputs) -> Iterator[Any]:
    """The source items, moved out of `inputs` into the executor: once it has taken them, the items
    live only as long as the run needs them (not through curation)."""
    items, inputs.items = inputs.items, []
    inputs.items_read = len(items)
    yield from items
