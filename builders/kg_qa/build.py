"""The kg-qa builder (`medmill build-kg-qa`): read the KG, make records in template mode, LLM
patient-scenario mode, or a seeded mix of both, then run_build curates and writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import LLMBuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import Step
from medmill.builders.kg_qa import BUILDER, BUILDER_VERSION
from medmill.builders.kg_qa.scenario_qa import (
    DESCRIPTION as SCENARIO_DESCRIPTION,
)
from medmill.builders.kg_qa.scenario_qa import (
    LLMQAConfig,
    build_llm_records,
    build_requests,
    entity_facts,
    split_by_mix,
)
from medmill.builders.kg_qa.template_qa import (
    ReverseStep,
    TemplateQAConfig,
    TemplateStep,
    build_template_records,
    entity_source,
    protected_terms,
)
from medmill.builders.kg_qa.templates import load_templates
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.readers.kg import read_kg
from medmill.schemas import RejectRow

TEMPLATE_DESCRIPTION = (
    "Question/answer pairs generated from a medical knowledge graph with fixed paraphrase templates: "
    "one question per entity relation or text attribute, questions combining two relations, and "
    "questions from symptoms back to the diseases that list them. Every fact in an answer is a KG "
    "value; answers are only as correct and complete as the source graph."
)


class KGQAConfig(LLMBuildConfig):
    """build-kg-qa: template mode, LLM mode, or a mix (shares of entities per mode)."""

    mode: Literal["template", "llm"] = Field("template", description="How questions are made: template (no LLM) or llm (patient-scenario QA from each entity's facts).")
    mix: dict[str, float] | None = Field(None, description="Shares of entities per mode, e.g. {template: 0.5, llm: 0.5}.")
    templates: Path | None = Field(None, description="Your own templates YAML (default: medmill's kg_qa_templates.yaml).")
    seed: int = Field(42, description="Seed of template choice, sampling and splits.")
    val_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the validation split (grouped by entity).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the test split (grouped by entity).")
    template_qa: TemplateQAConfig = Field(default_factory=TemplateQAConfig)
    llm_qa: LLMQAConfig = Field(default_factory=LLMQAConfig)

    @model_validator(mode="after")
    def _shares(self) -> KGQAConfig:
        if self.mix is not None and (set(self.mix) - {"template", "llm"} or sum(self.mix.values()) <= 0):
            raise ValueError(f"mix takes template and llm shares adding up to more than 0, got {self.mix}")
        return self

    @property
    def shares(self) -> dict[str, float]:
        return self.mix or {self.mode: 1.0}

    @property
    def uses_llm(self) -> bool:
        return self.mode == "llm" or self.mix is not None


class KGQABuilder(Builder[KGQAConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = KGQAConfig

    def read(self, cfg: KGQAConfig, ctx: BuildContext) -> Inputs:
        # the output dir (and a --cache file) may sit inside an input folder: a re-run must not read them
        read = read_kg(cfg.inputs, exclude=ctx.own_paths)
        entities = read.entities[: cfg.limit] if cfg.limit else read.entities
        counters = read.counters.copy()
        counters["entities_read"] = len(entities)
        return Inputs(entities, read.files, read.rejects, counters)

    def protected_terms(self, cfg: KGQAConfig, inputs: Inputs) -> frozenset[str]:
        return protected_terms(inputs.items)

    def generation(self, cfg: KGQAConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """Template mode: a map step over batches of entities, then the questions across the graph (a
        global step holding every entity). LLM and mixed modes call the engine: `generate`, in the driver."""
        if cfg.uses_llm:
            return super().generation(cfg, inputs, ctx, out)
        templates = load_templates(cfg.templates)
        out.prompt(templates.ref)
        return [TemplateStep(templates, cfg.template_qa), ReverseStep(templates, cfg.template_qa, inputs.items)]

    def generate(self, cfg: KGQAConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        """LLM or mixed mode: the template share as in template mode, the LLM share through the engine."""
        template_part, llm_part = split_by_mix(inputs.items, cfg.shares, cfg.seed)
        if template_part:
            templates = load_templates(cfg.templates)
            with ctx.progress("questions", len(template_part)) as advance:
                build_template_records(template_part, templates, cfg.template_qa, out=out)
                advance(len(template_part), "entities")
            if cfg.uses_llm:
                out.counters["entities_template"] = len(template_part)
            out.prompt(templates.ref)
        if not cfg.uses_llm:
            return
        prompt = load_prompt(cfg.llm_qa.prompt)
        out.prompt(prompt.ref)
        usable = []
        for entity in llm_part:
            if entity_facts(entity, cfg.llm_qa).values:
                usable.append(entity)
                continue
            out.counters["rejected.no_usable_facts"] += 1
            out.reject(RejectRow(stage="build", reason="no_usable_facts",
                                 message=f"entity {entity.name!r} has no KG values to write questions from",
                                 source=entity_source(entity)))
        out.counters["entities_llm"] = len(usable)
        out.usage.update({"calls_sent": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "retries": 0, "reasks": 0})
        if not usable:  # `--mix template=1` (or a share with no usable entity) needs no LLM, model or endpoint
            return
        with ctx.engine(cfg.llm, out) as engine:
            results = engine.run(build_requests(usable, prompt, cfg.llm_qa), desc="scenario QA")
        build_llm_records(usable, results, prompt, cfg.llm_qa, cfg.llm.model, out)

    def describe(self, cfg: KGQAConfig, inputs: Inputs, out: Collector) -> str:
        return SCENARIO_DESCRIPTION if cfg.uses_llm else TEMPLATE_DESCRIPTION

    def figures(self, cfg: KGQAConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        if not cfg.uses_llm:
            return [("files read", len(inputs.files)), ("entities read", inputs.items_read),
                    ("records generated", out.generated)]
        u = out.usage
        return [
            ("entities read", inputs.items_read),
            ("entities (llm / template)", f"{out.counters['entities_llm']} / {out.counters['entities_template']}"),
            ("LLM calls sent / cached", f"{u['calls_sent']} / {u['cache_hits']}"),
            ("LLM tokens (prompt + completion)", f"{u['prompt_tokens']:,} + {u['completion_tokens']:,}"),
            ("LLM retries / re-asks", f"{u['retries']} / {u['reasks']}"),
        ]
