"""medmill filter DIR... --out DIR: quality rules, PII redaction, safety lexicon and decontamination
over existing dataset dirs; splits are kept, every drop is a reject row naming its rule."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medmill.commands._run_options import ExecutorOption, RayAddressOption, RunOptions, WorkersOption
from medmill.config import ConfigOption
from medmill.console import build_summary, progress
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

if TYPE_CHECKING:
    from medmill.builders.curation.settings import CurationSettings
    from medmill.builders.manifest import Manifest
    from medmill.builders.pipeline import Step
    from medmill.builders.streaming.run import DedupPlan
    from medmill.builders.writer import BuildInfo


def filter_dirs(
    dirs: list[Path] = typer.Argument(..., help="Dataset dir(s) of one record kind."),
    out: Path = typer.Option(..., "--out", help="Output dataset dir."),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="Quality rules."),
    min_chars: int = typer.Option(2, "--min-chars", help="Shortest answer kept (characters)."),
    max_chars: int = typer.Option(50_000, "--max-chars", help="Longest answer kept (characters)."),
    min_cjk_share: float = typer.Option(0.0, "--min-cjk-share", help="Least share of CJK among letters (0 = off)."),
    strip_boilerplate: bool = typer.Option(True, "--strip-boilerplate/--keep-boilerplate", help="Strip greeting/sign-off boilerplate from answers."),
    pii: bool = typer.Option(True, "--pii/--no-pii", help="PII detection."),
    pii_action: str = typer.Option("redact", "--pii-action", help="redact (typed placeholders) or drop."),
    pii_types: str = typer.Option("", "--pii-types", help="Comma-separated subset of PHONE,ID_CARD,EMAIL,IP,URL,BANK_CARD,PATIENT_ID."),
    safety: bool = typer.Option(True, "--safety/--no-safety", help="Safety lexicon."),
    safety_lexicon: list[Path] = typer.Option([], "--safety-lexicon", help="Extra lexicon file (yaml/txt); repeatable."),
    safety_flag_only: bool = typer.Option(False, "--safety-flag-only", help="Flag every category instead of dropping."),
    decontaminate: list[Path] = typer.Option([], "--decontaminate", help="Eval set (dataset dir, JSON/JSONL/CSV); repeatable."),
    decontam_ngram: int = typer.Option(13, "--decontam-ngram", help="Shared character n-gram length that counts as contamination."),
    decontam_field: str = typer.Option("", "--decontam-field", help="Eval field/column to read (default: all text fields)."),
    workers: int = WorkersOption,
    executor: str = ExecutorOption,
    ray_address: str = RayAddressOption,
    config: Path | None = ConfigOption,
) -> None:
    """Filter dataset dirs: quality rules, PII, safety lexicon, decontamination."""
    from medmill.builders.curation.settings import PII_TYPES, curation_settings

    if pii_action not in ("redact", "drop"):
        raise MedmillError(f"--pii-action must be redact or drop, got {pii_action!r}")
    types = [t.strip().upper() for t in pii_types.split(",") if t.strip()] or list(PII_TYPES)
    unknown = sorted(set(types) - set(PII_TYPES))
    if unknown:
        raise MedmillError(f"--pii-types: unknown {', '.join(unknown)}; known: {', '.join(PII_TYPES)}")
    for p in [*safety_lexicon, *decontaminate]:
        if not p.exists():
            raise MedmillError(f"file not found: {p}")
    settings = curation_settings(
        validate_records=False,
        quality=quality, min_chars=min_chars, max_chars=max_chars, min_cjk_share=min_cjk_share,
        strip_boilerplate=strip_boilerplate, pii=pii, pii_action=pii_action, pii_types=types, safety=safety,
        lexicons=list(safety_lexicon), safety_flag_only=safety_flag_only, dedup=False,
        decontaminate=list(decontaminate), decontam_ngram=decontam_ngram, decontam_field=decontam_field or None,
    )
    run_over_dirs("filter", dirs, out, settings, params={"settings": json.loads(settings.model_dump_json())},
                  run=RunOptions(executor, workers, ray_address))


def run_over_dirs(
    command: str,
    dirs: list[Path],
    out: Path,
    settings: CurationSettings,
    params: dict[str, Any],
    make_steps: Callable[[str, BuildInfo], list[Step]] | None = None,
    run: RunOptions | None = None,
    dedup: Callable[[str], DedupPlan] | None = None,
) -> Manifest:
    """Shared by filter and dedup: read dirs, run the curation steps (`make_steps(kind, info)` adds
    more, e.g. dedup writing clusters.jsonl into `info.extra_files`), write with the same splits.

    `run.executor`: "local" streams batches through `run.workers` processes (`dedup(kind)` gives the
    streamed dedup step); "memory" holds every record in memory (the path before streaming; kept as
    the reference the streamed output is tested against); "ray" runs on a Ray cluster."""
    run = run or RunOptions()
    if any(out.resolve() == d.resolve() for d in dirs):
        raise MedmillError(f"--out {out} is one of the inputs; write to a new dir")
    if run.executor != "memory":
        return _run_streamed(command, dirs, out, settings, params, run, dedup)
    from medmill.builders.build import finish_build
    from medmill.builders.curation.inputs import finalise, load_dirs
    from medmill.builders.curation.stages import curation_steps
    from medmill.builders.dataset_dir import read_manifest
    from medmill.builders.pipeline import Step, StepResult
    from medmill.builders.writer import BuildInfo

    t0 = time.perf_counter()
    from medmill.builders.streaming.outputs import as_uri

    if as_uri(out):
        raise MedmillError(f"--out {out}: writing to a URI needs --executor local or ray")
    loaded = load_dirs(dirs)
    fixed: dict[str, str] = {}

    def finish(records):
        kept, splits = finalise(records)
        fixed.update(splits)
        return StepResult(kept)

    # the inputs' licenses carry over: one shared license stays the dataset's, each dir's is its shards'
    licenses = {str(d): str((read_manifest(d) or {}).get("license") or "other") for d in dirs}
    shared = set(licenses.values())
    info = BuildInfo(
        license=shared.pop() if len(shared) == 1 else "other", source_licenses=licenses,
        kind=loaded.kind, builder=command, command=invocation([command, *dirs, "--out", out]), params={"inputs": [str(d) for d in dirs], **params},
        inputs=sorted(f for d in dirs for f in (Path(d) / "data").glob("*.parquet")), fixed_splits=fixed, description=f"`medmill {command}` over {', '.join(str(d) for d in dirs)}.",
    )
    info.max_shard_bytes = run.max_shard_bytes
    steps = [*curation_steps(loaded.kind, settings), *(make_steps(loaded.kind, info) if make_steps else []), Step("finalise", finish)]
    info.counters.update({f"read.{d}": n for d, n in loaded.per_dir.items()})
    manifest = finish_build(out, loaded.records, loaded.rejects, info, steps, started=t0)
    rows = [("kind", loaded.kind), ("records read", len(loaded.records) + len(loaded.rejects))]
    for name, n in sorted(manifest.counters.items()):
        if not name.startswith("read."):
            rows.append((name, n))
    build_summary(f"{command} {out}", manifest, rows)
    return manifest


def _base_info(command: str, dirs: list[Path], out: Path, kind: str, params: dict[str, Any]) -> BuildInfo:
    from medmill.builders.dataset_dir import read_manifest
    from medmill.builders.writer import BuildInfo

    # the inputs' licenses carry over: one shared license stays the dataset's, each dir's is its shards'
    licenses = {str(d): str((read_manifest(d) or {}).get("license") or "other") for d in dirs}
    shared = set(licenses.values())
    return BuildInfo(
        license=shared.pop() if len(shared) == 1 else "other", source_licenses=licenses,
        kind=kind, builder=command, command=invocation([command, *dirs, "--out", out]), params={"inputs": [str(d) for d in dirs], **params},
        inputs=sorted(f for d in dirs for f in (Path(d) / "data").glob("*.parquet")), fixed_splits={},
        description=f"`medmill {command}` over {', '.join(str(d) for d in dirs)}.",
    )


def _run_streamed(
    command: str, dirs: list[Path], out: Path, settings: CurationSettings, params: dict[str, Any], run: RunOptions,
    dedup: Callable[[str], DedupPlan] | None,
) -> Manifest:
    from medmill.builders.curation.stages import curation_steps
    from medmill.builders.streaming.inputs import dirs_kind

    t0 = time.perf_counter()
    kind = dirs_kind(dirs)
    info = _base_info(command, dirs, out, kind, params)
    info.max_shard_bytes = run.max_shard_bytes
    steps = curation_steps(kind, settings)
    plan = dedup(kind) if dedup else None
    from medmill.builders.streaming.outputs import staged_output

    with staged_output(out) as local_out:
        if run.executor == "ray":
            from medmill.builders.streaming.ray_executor import run_on_ray

            result = run_on_ray(dirs, local_out, kind, steps, info, plan, run.workers, run.ray_address, run.batch_rows, started=t0)
        else:
            from medmill.builders.streaming.run import run_streaming

            with progress() as bar:
                task = bar.add_task(f"{command} (streaming, {run.process_count()} processes)", total=None, status="")
                result = run_streaming(dirs, local_out, kind, steps, info, plan, run.process_count(), run.batch_rows,
                                       started=t0, on_batch=lambda n: bar.advance(task, n))
    manifest = result.manifest
    rows: list[tuple[str, Any]] = [("kind", kind), ("records read", result.records_read),
                                   ("executor", f"{run.executor}, {run.process_count()} processes")]
    for name, n in sorted(manifest.counters.items()):
        if not name.startswith("read."):
            rows.append((name, n))
    for stage, n, secs in result.stage_rates:
        rows.append((f"records/s {stage}", round(n / secs) if secs > 0 else n))
    build_summary(f"{command} {out}", manifest, rows)
    if manifest.records_total == 0:
        top = sorted(manifest.rejects_by_reason.items(), key=lambda kv: -kv[1])[:3]
        why = ", ".join(f"{k} {v}" for k, v in top) or "no input records"
        raise MedmillError(f"no records survived the build ({why}); see {Path(out) / 'rejects.jsonl'}")
    return manifest


def register(app: typer.Typer) -> None:
    app.command("filter")(filter_dirs)
