"""One build-self-instruct run: read seeds, loop the LLM to N accepted tasks, curate, write the dir.

Wired through the shared build tail (`finish_build`); everything builder-specific sits here and in
generate.py, so moving onto the build skeleton is a change of this one module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.llm.engine import LLMEngine
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.llm.types import LLMSettings
from medmill.builders.self_instruct.generate import BUILDER, SelfInstructConfig, SelfInstructLoop
from medmill.builders.self_instruct.seeds import read_seeds
from medmill.schemas.errors import MedmillError

DEFAULT_PROMPT = "self_instruct"
DESCRIPTION = (
    "Medical instruction data grown from seed tasks with an LLM (self-instruct, as MedicalGPT-zh, "
    "GenMedGPT-5k and BELLE did): each request showed a few seed tasks and recently accepted tasks and "
    "asked for new ones of one category, the least-filled so far. A task was kept only when its patient "
    "text was new: character 3-gram Jaccard below the novelty threshold against every seed and every task "
    "accepted before it (MinHash LSH for candidates, exact Jaccard to decide). Answers are model output, "
    "checked for shape, length, Chinese and meta-talk, not reviewed by clinicians."
)


class SelfInstructBuild(BaseModel):
    """The typed configuration of `medmill build-self-instruct`; the manifest's params."""

    model_config = ConfigDict(extra="forbid")

    seeds: list[Path] = Field(min_length=1)
    out: Path
    generation: SelfInstructConfig
    prompt: str = DEFAULT_PROMPT
    val_size: float = Field(0.0, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    llm: LLMSettings
    curation: CurationSettings = Field(default_factory=CurationSettings)


def run_self_instruct(cfg: SelfInstructBuild, *, command: str, progress: Progress = no_progress,
                      ) -> tuple[Manifest, dict[str, Any]]:
    """Build `cfg.out`. Re-running the same command after a kill replays paid requests from the cache."""
    if not cfg.llm.model:
        raise MedmillError("--llm-model is required (the model the endpoint serves)")
    t0 = time.perf_counter()
    read = read_seeds(cfg.seeds)
    prompt = load_prompt(cfg.prompt)
    t1 = time.perf_counter()
    with LLMEngine(cfg.llm, cfg.out, progress=progress) as engine:
        loop = SelfInstructLoop(read.seeds, prompt, cfg.generation, model=cfg.llm.model)
        result = loop.run(engine)
        llm_info, usage = engine.describe(), engine.usage
    t2 = time.perf_counter()
    counters = read.counters + result.counters
    for key, value in result.counters.items():  # keep zero category counts (Counter addition drops them)
        counters[key] = value
    params = cfg.model_dump(mode="json", exclude={"out", "llm"})
    info = BuildInfo(
        kind="sft", builder=BUILDER, command=command, params=params, inputs=read.files, seed=cfg.generation.seed,
        val_size=cfg.val_size, test_size=cfg.test_size, license=cfg.license, source_licenses=cfg.source_licenses,
        counters=counters, prompts=[prompt.ref], llm=llm_info, usage=usage,
        timings={"read": t1 - t0, "generate": t2 - t1}, description=DESCRIPTION,
    )
    manifest = finish_build(cfg.out, result.records, read.rejects + result.rejects, info,
                            curation_steps("sft", cfg.curation), started=t0)
    figures: dict[str, Any] = {
        "seed tasks": len(read.seeds),
        "requests (this run: sent / cached)": f"{result.requests} ({usage['calls_sent']} / {usage['cache_hits']})",
        "tasks accepted / target": f"{len(result.records)} / {cfg.generation.num}",
        "near-copies rejected": result.counters.get("rejected.near_copy", 0),
        "per category": ", ".join(f"{c} {n}" for c, n in result.categories.items()),
    }
    if result.counters.get("stopped_at_max_requests"):
        figures["stopped"] = f"request cap {cfg.generation.request_cap()} reached before {cfg.generation.num}"
    return manifest, figures
