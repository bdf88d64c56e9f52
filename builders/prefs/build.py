"""The prefs builder (`medmill build-prefs`): read inputs, make one pair per prompt with the chosen
strategy (each in its own module); run_build curates and writes them.

- corrupt (default, no LLM): rejected = the reference answer made worse by a recorded perturbation;
- judge: candidates (models' answers, the reference, a given rejected) each scored alone by a judge;
  chosen = strictly best, rejected = worst, kept when the margin is at least `min_margin`;
- reference: chosen = the reference answer, rejected = a model's (or the given) answer, optionally
  confirmed by the judge.
Pairs read from preference files are kept as given under corrupt, and re-checked under judge/reference.

Every strategy streams (`--executor local`, the default): the pairs are made batch by batch on the
workers and written as they come. corrupt reads its prompts once and spills them (corrupt_stream.py);
judge and reference, whose generation is map steps anyway (steps.py), hand the prompts they read to the
workers in batches of about two rounds of an engine's share. With a model whose concurrency is below
the worker count (or a local transformers model) judge and reference build in memory, where the
executor runs that model's step on fewer workers.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from medmill.builders.core.builder import BuildContext, Builder, Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import Step
from medmill.builders.prefs.config import BUILDER, BUILDER_VERSION, PrefsConfig
from medmill.builders.prefs.corrupt import corrupt
from medmill.builders.prefs.judge import judge_steps
from medmill.builders.prefs.reference import reference_steps
from medmill.builders.readers.prompt_items import FieldNames, PromptItem, read_inputs
from medmill.schemas import RejectRow
from medmill.schemas.dataset_dir import read_manifest
from medmill.schemas.errors import MedmillError


def _input_licenses(cfg: PrefsConfig) -> dict[str, str]:
    """--source-license entries, and for input dataset dirs not named there the license in their manifest."""
    licenses: dict[str, str] = {}
    for path in cfg.inputs:
        manifest = read_manifest(path) if Path(path).is_dir() else None
        if manifest and manifest.get("license"):
            licenses[str(path)] = str(manifest["license"])
    return licenses | cfg.source_licenses


class PrefsBuilder(Builder[PrefsConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "preference"
    config = PrefsConfig

    def read(self, cfg: PrefsConfig, ctx: BuildContext) -> Inputs:
        _check(cfg)
        read = read_inputs(cfg.inputs, FieldNames(cfg.question_field, cfg.answer_field))
        items, dup_rejects = _unique_prompts(read.items)
        if cfg.limit is not None:
            items = items[: cfg.limit]
        if not items:
            raise MedmillError(f"no usable prompt in the inputs ({len(read.rejects)} record(s) rejected while reading)")
        counters = Counter({"inputs.items": len(read.items), "inputs.duplicate_prompts": len(dup_rejects)})
        return Inputs(items, list(cfg.inputs), read.rejects + dup_rejects, counters)

    def read_stream(self, cfg: PrefsConfig, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream | None:
        """corrupt: the prompts read, spilled and given their perturbation in two passes (corrupt_stream.py);
        judge and reference: the prompts as read, in small batches (None, in memory: see the module docstring)."""
        if cfg.strategy != "corrupt":
            models = [*cfg.candidates, *([cfg.judge] if cfg.judge else [])]
            if any(s.backend == "transformers" or s.concurrency < ctx.workers for s in models):
                return None
            from medmill.builders.streaming.build_stream import list_stream

            share = min((max(1, s.concurrency // ctx.workers) for s in models), default=batch_items)
            batch_items = next(n for n in range(min(batch_items, 2 * share), 0, -1) if batch_items % n == 0)
            return list_stream(self.read(cfg, ctx), batch_items)
        _check(cfg)
        from medmill.builders.prefs.corrupt_stream import corrupt_stream

        # its option pass forks local processes, whichever executor runs the batches: at most this machine's cores
        return corrupt_stream(cfg, work, batch_items, min(ctx.workers, len(os.sched_getaffinity(0))), ctx.progress)

    def generation(self, cfg: PrefsConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """judge and reference: item-wise steps whose LLM calls run on the workers (steps.py); corrupt
        (no LLM, a lexicon over the whole input) in the driver, or streamed as `CorruptStep`."""
        if "corrupt" in inputs.extra:
            step = inputs.extra["corrupt"]
            out.prompt(step.corrupter.lexicon.ref)
            return [step]
        if cfg.strategy == "judge":
            return judge_steps(cfg, ctx, out)
        if cfg.strategy == "reference":
            return reference_steps(cfg, inputs.items, ctx, out)
        return super().generation(cfg, inputs, ctx, out)

    def generate(self, cfg: PrefsConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        corrupt(cfg, inputs.items, ctx, out)

    def describe(self, cfg: PrefsConfig, inputs: Inputs, out: Collector) -> str:
        return _DESCRIPTIONS[cfg.strategy]

    def figures(self, cfg: PrefsConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [("strategy", cfg.strategy)]
        return rows + [(k, v) for k, v in sorted(manifest.counters.items()) if k.startswith(("pairs.", "perturbation."))]

    def params(self, cfg: PrefsConfig) -> dict[str, Any]:
        return _params(cfg)

    def source_licenses(self, cfg: PrefsConfig, inputs: Inputs) -> dict[str, str]:
        return _input_licenses(cfg)


_DESCRIPTIONS = {
    "corrupt": "Preference pairs: chosen = the source answer, rejected = the same answer made worse by a "
    "recorded perturbation (KG fact swap, truncation, unsafe advice, overconfidence, dose change); see meta.perturbation.",
    "judge": "Preference pairs: several candidate answers per prompt, each scored alone by an LLM judge on a "
    "medical rubric (helpful, honest, harmless, accurate, safe); chosen = strictly best, rejected = worst, "
    "margin at least min_margin; ties and missing scores were dropped.",
    "reference": "Preference pairs: chosen = the corpus/KG-grounded reference answer, rejected = a model's answer "
    "to the same prompt (confirmed by an LLM judge when meta.judge is set).",
}


def _check(cfg: PrefsConfig) -> None:
    if cfg.strategy == "judge" and cfg.judge is None:
        raise MedmillError("--strategy judge needs a judge model (--judge-model or --llm-model)")
    if cfg.pairwise_check and (cfg.judge is None or cfg.strategy == "corrupt"):
        raise MedmillError("--pairwise-check needs a judge: --strategy judge, or reference with --judge-model")
    for s in [*cfg.candidates, *([cfg.judge] if cfg.judge else [])]:
        if s.backend == "openai" and not s.model:
            raise MedmillError("every candidate/judge endpoint needs a model name")


def _unique_prompts(items: list[PromptItem]) -> tuple[list[PromptItem], list[RejectRow]]:
    """One pair per prompt: later copies of a prompt are rejected before any LLM call is paid for."""
    seen: dict[str, PromptItem] = {}
    rejects = []
    for item in items:
        first = seen.get(item.key)
        if first is None:
            seen[item.key] = item
            continue
        where = f"{first.source.file}:{first.source.line}" if first.source.line else str(first.source.file)
        rejects.append(
            RejectRow(stage="select", reason="duplicate_prompt", message=f"same prompt as {where}", source=item.source,
                      raw={"prompt": [m.model_dump() for m in item.prompt]})
        )
    return list(seen.values()), rejects


def _params(cfg: PrefsConfig) -> dict[str, Any]:
    """Build parameters for the manifest: models by name and endpoint host, never keys."""
    params = cfg.model_dump(mode="json", exclude={"out", "candidates", "judge", "curation"})
    params["candidates"] = [s.model for s in cfg.candidates]
    params["judge"] = cfg.judge.model if cfg.judge else None
    params["curation"] = cfg.curation.model_dump(mode="json")
    if cfg.strategy != "corrupt":
        params.pop("perturbations")
    return params
