"""The self-instruct builder (`medmill build-self-instruct`): seed tasks -> an LLM loop to N accepted,
novel, category-balanced tasks; run_build curates and writes them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import Field

from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import LLMBuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.self_instruct import BUILDER, BUILDER_VERSION
from medmill.builders.self_instruct.generate import GenerationSettings, SelfInstructLoop
from medmill.builders.self_instruct.seeds import read_seeds
from medmill.schemas.errors import MedmillError

DESCRIPTION = (
    "Medical instruction data grown from seed tasks with an LLM (self-instruct, as MedicalGPT-zh, "
    "GenMedGPT-5k and BELLE did): each request showed a few seed tasks and recently accepted tasks and "
    "asked for new ones of one category, the least-filled so far. A task was kept only when its patient "
    "text was new: character 3-gram Jaccard below the novelty threshold against every seed and every task "
    "accepted before it (MinHash LSH for candidates, exact Jaccard to decide). Answers are model output, "
    "checked for shape, length, Chinese and meta-talk, not reviewed by clinicians."
)


class SelfInstructConfig(LLMBuildConfig):
    """build-self-instruct: `inputs` are the seed files."""

    generation: GenerationSettings
    prompt: str = Field("self_instruct", description="Prompt id shipped with medmill or your own YAML file.")
    seed: int = Field(42, description="Seed of seed sampling and splits.")
    val_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the validation split (grouped by request).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the test split (grouped by request).")
    limit: int | None = Field(None, ge=1, description="Use only the first N seed tasks (trial runs).")


class SelfInstructBuilder(Builder[SelfInstructConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = SelfInstructConfig
    description = DESCRIPTION

    def read(self, cfg: SelfInstructConfig, ctx: BuildContext) -> Inputs:
        if not cfg.llm.model:
            raise MedmillError("--llm-model is required (the model the endpoint serves)")
        read = read_seeds(cfg.inputs)
        seeds = read.seeds[: cfg.limit] if cfg.limit else read.seeds
        return Inputs(seeds, read.files, read.rejects, Counter(read.counters))

    def generate(self, cfg: SelfInstructConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        prompt = load_prompt(cfg.prompt)
        out.prompt(prompt.ref)
        settings = cfg.generation.model_copy(update={"seed": cfg.seed})
        with ctx.engine(cfg.llm, out) as engine:
            result = SelfInstructLoop(inputs.items, prompt, settings, model=cfg.llm.model).run(engine)
        for record in result.records:
            out.add(record)
        for row in result.rejects:
            out.reject(row)
        for key, value in result.counters.items():  # zero category counts included
            out.counters[key] += value
        inputs.extra["categories"] = result.categories
        inputs.extra["requests"] = result.requests

    def figures(self, cfg: SelfInstructConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c, u = out.counters, out.usage
        rows: list[tuple[str, Any]] = [
            ("seed tasks", inputs.items_read),
            ("requests (this run: sent / cached)", f"{inputs.extra['requests']} ({u['calls_sent']} / {u['cache_hits']})"),
            ("tasks accepted / target", f"{c['accepted']} / {cfg.generation.num}"),
            ("near-copies rejected", c.get("rejected.near_copy", 0)),
            ("per category", ", ".join(f"{k} {n}" for k, n in inputs.extra["categories"].items())),
        ]
        if c.get("stopped_at_max_requests"):
            rows.append(("stopped", f"request cap {cfg.generation.request_cap()} reached before {cfg.generation.num}"))
        return rows
