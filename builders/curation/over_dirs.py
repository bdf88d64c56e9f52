"""Curation over existing dataset dirs (`medmill filter`, `medmill dedup`) as a builder: the reader
loads the dirs (remembering each record's split), there is nothing to generate, the curation steps
(plus the command's own, e.g. dedup writing clusters.jsonl) run, and every record goes back to its
split. run_build does the rest, as for every other build."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import BuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import GlobalStep, Step, StepResult
from medmill.builders.curation.inputs import finalise, load_dirs
from medmill.builders.curation.stages import curation_steps
from medmill.schemas.dataset_dir import read_manifest


class KeepSplits(GlobalStep):
    """Each record goes back to the split it was read from (the marker leaves its meta)."""

    name = "finalise"

    def __call__(self, records: list) -> StepResult:
        kept, splits = finalise(records)
        return StepResult(kept, splits=splits)


class CurateDirsConfig(BuildConfig):
    params: dict[str, Any] = Field(default_factory=dict, description="The command's own settings, for the manifest.")


class CurateDirsBuilder(Builder[CurateDirsConfig]):
    """`name` is the command (filter, dedup); `extra_steps(kind)` adds the command's own steps."""

    version = "1"
    kind = "sft"  # replaced by the kind the input dirs hold
    config = CurateDirsConfig

    def __init__(self, command: str, extra_steps: Callable[[str], list[Step]] | None = None) -> None:
        self.name = command  # type: ignore[misc]
        self.extra_steps = extra_steps

    def read(self, cfg: CurateDirsConfig, ctx: BuildContext) -> Inputs:
        loaded = load_dirs(cfg.inputs)
        files = sorted(f for d in cfg.inputs for f in (Path(d) / "data").glob("*.parquet"))
        counters = Counter({f"read.{d}": n for d, n in loaded.per_dir.items()})
        return Inputs(loaded.records, files, loaded.rejects, counters, kind=loaded.kind)

    def generate(self, cfg: CurateDirsConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        out.records.extend(inputs.items)

    def steps(self, cfg: CurateDirsConfig, kind: str, protected_terms: frozenset[str] = frozenset()) -> list[Step]:
        return [*curation_steps(kind, cfg.curation, protected_terms), *(self.extra_steps(kind) if self.extra_steps else []), KeepSplits()]

    def params(self, cfg: CurateDirsConfig) -> dict[str, Any]:
        return {"inputs": [str(d) for d in cfg.inputs], **cfg.params}

    def source_licenses(self, cfg: CurateDirsConfig, inputs: Inputs) -> dict[str, str]:
        return {str(d): str((read_manifest(d) or {}).get("license") or "other") for d in cfg.inputs}

    def license(self, cfg: CurateDirsConfig, inputs: Inputs) -> str:
        """The inputs' licence when they share one, else "other" (each dir's is in source_licenses)."""
        shared = set(self.source_licenses(cfg, inputs).values())
        return shared.pop() if len(shared) == 1 else "other"

    def describe(self, cfg: CurateDirsConfig, inputs: Inputs, out: Collector) -> str:
        return f"`medmill {self.name}` over {', '.join(str(d) for d in cfg.inputs)}."

    def figures(self, cfg: CurateDirsConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [("kind", manifest.kind), ("records read", inputs.items_read + len(inputs.rejects))]
        return rows + [(name, n) for name, n in sorted(manifest.counters.items()) if not name.startswith("read.")]
