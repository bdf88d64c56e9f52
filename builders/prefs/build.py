"""build-prefs end to end: read inputs, make one pair per prompt with the chosen strategy, curate, write.

- corrupt (default, no LLM): rejected = the reference answer made worse by a recorded perturbation;
- judge: candidates (models' answers, the reference, a given rejected) each scored alone by a judge;
  chosen = strictly best, rejected = worst, kept when the margin is at least `min_margin`;
- reference: chosen = the reference answer, rejected = a model's (or the given) answer, optionally
  confirmed by the judge.
Pairs read from preference files are kept as given under corrupt, and re-checked under judge/reference.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.stages import curation_steps
from medmill.builders.prefs.config import BUILDER, PrefsConfig
from medmill.builders.prefs.corrupt import corrupt
from medmill.builders.prefs.judge import judge
from medmill.builders.prefs.reference import reference
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


def build_prefs(cfg: PrefsConfig, command: str = "medmill build-prefs") -> Manifest:
    t0 = time.perf_counter()
    _check(cfg)
    read = read_inputs(cfg.inputs, FieldNames(cfg.question_field, cfg.answer_field))
    items, dup_rejects = _unique_prompts(read.items)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    if not items:
        raise MedmillError(f"no usable prompt in the inputs ({len(read.rejects)} record(s) rejected while reading)")
    t1 = time.perf_counter()
    if cfg.strategy == "corrupt":
        outcome = corrupt(cfg, items)
    elif cfg.strategy == "judge":
        outcome = judge(cfg, items)
    else:
        outcome = reference(cfg, items)
    counters = Counter({"inputs.items": len(read.items), "inputs.duplicate_prompts": len(dup_rejects)})
    counters.update(outcome.counters)
    info = BuildInfo(
        kind="preference",
        builder=BUILDER,
        command=command,
        params=_params(cfg),
        inputs=list(cfg.inputs),
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        source_licenses=_input_licenses(cfg),
        counters=counters,
        prompts=outcome.prompts,
        llm=outcome.llm,
        usage=outcome.usage,
        timings={"read": t1 - t0, "pairs": time.perf_counter() - t1},
        description=_DESCRIPTIONS[cfg.strategy],
    )
    steps = curation_steps("preference", cfg.curation)
    return finish_build(cfg.out, outcome.records, read.rejects + dup_rejects + outcome.rejects, info, steps)


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
    params = cfg.model_dump(mode="json", exclude={"inputs", "out", "candidates", "judge", "curation"})
    params["candidates"] = [s.model for s in cfg.candidates]
    params["judge"] = cfg.judge.model if cfg.judge else None
    params["curation"] = cfg.curation.model_dump(mode="json")
    if cfg.strategy != "corrupt":
        params.pop("perturbations")
    return params
