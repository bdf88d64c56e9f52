"""The kg-qa builder (`medmill build-kg-qa`): read the KG, make records in template mode, LLM
patient-scenario mode, or a seeded mix of both, then run_build curates and writes them.

Every mode streams (`--executor local`, the default): the KG is in memory anyway (the reader merges
entities by name), its records are made batch by batch on the workers and written as they come. In LLM
and mixed modes the stream is put in the order the in-memory steps write (`MixSplit`: the template
share's records, then its rejects of entities with no usable fact; the LLM step; `MixJoin`): template
entities, their questions across the graph, entities with no usable fact, then the LLM's entities, so
records and rejects come out as in memory. With an LLM concurrency below the worker count (or a local
transformers model) LLM and mixed modes build in memory, where the LLM step runs on fewer workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medmill.builders.core.builder import BuildContext, Builder, Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import LLMBuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import GlobalStep, MapStep, Step, StepResult
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
    reverse_groups,
)
from medmill.builders.kg_qa.templates import load_templates
from medmill.builders.llm.prompts import load_prompt
from medmill.builders.llm.types import Runner
from medmill.builders.readers.kg import read_kg
from medmill.schemas import KGEntity, RejectRow

TEMPLATE_DESCRIPTION = (
    "Question/answer pairs generated from a medical knowledge graph with fixed paraphrase templates: "
    "one question per entity relation or text attribute, questions combining two relations, and "
    "questions from symptoms back to the diseases that list them. Every fact in an answer is a KG "
    "value; answers are only as correct and complete as the source graph."
)


RECORDS_PER_ENTITY = 16  # about what template mode makes of a QASystem-style disease (bench/kg_qa.py)


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

    def read_stream(self, cfg: KGQAConfig, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream | None:
        """Template mode: the entities, then the questions across the graph (`reverse_groups`, found here
        from every entity) as one stream, so their records come last, as `ReverseStep` puts them. LLM and
        mixed modes: `_mix_stream`."""
        if cfg.uses_llm:
            return self._mix_stream(cfg, ctx, batch_items)
        inputs = self.read(cfg, ctx)
        templates = load_templates(cfg.templates)
        groups, counters = reverse_groups(inputs.items, templates, cfg.template_qa)
        inputs.extra.update(templates=templates, reverse_counters=counters)
        inputs.items_read = len(inputs.items)
        entities = inputs.items
        # batches of about `batch_items` records, not entities (a divisor, so no batch straddles a chunk)
        batch_items = next(n for n in range(max(1, batch_items // RECORDS_PER_ENTITY), 0, -1) if batch_items % n == 0)

        def batches() -> Iterator[list[Any]]:
            items = chain(entities, groups)
            while batch := list(islice(items, batch_items)):
                yield batch

        return ItemStream(inputs, batches, len(entities) + len(groups))

    def _mix_stream(self, cfg: KGQAConfig, ctx: BuildContext, batch_items: int) -> ItemStream | None:
        """LLM and mixed modes as one stream in `MixSplit`'s order (see the module docstring), in batches
        of about two rounds of an engine's share, so every worker gets some; None (in memory) when there
        are fewer engines than workers."""
        if cfg.llm.backend == "transformers" or cfg.llm.concurrency < ctx.workers:
            return None
        inputs = self.read(cfg, ctx)
        template_part, llm_part = split_by_mix(inputs.items, cfg.shares, cfg.seed)
        templates = load_templates(cfg.templates) if template_part else None
        groups, counters = reverse_groups(template_part, templates, cfg.template_qa) if templates else ([], Counter())
        usable = [e for e in llm_part if entity_facts(e, cfg.llm_qa).values]
        unusable = [NoFacts(e) for e in llm_part if not entity_facts(e, cfg.llm_qa).values]
        if template_part:
            counters["entities_template"] = len(template_part)
        counters["entities_llm"] = len(usable)
        inputs.items_read = len(inputs.items)
        inputs.extra.update(templates=templates, mix_counters=counters, mix_asks=bool(usable))
        share = max(1, cfg.llm.concurrency // ctx.workers)
        batch_items = next(n for n in range(min(batch_items, 2 * share), 0, -1) if batch_items % n == 0)
        parts: list[list[Any]] = [template_part, groups, unusable, [AskLLM(e) for e in usable]]

        def batches() -> Iterator[list[Any]]:
            items = chain.from_iterable(parts)
            while batch := list(islice(items, batch_items)):
                yield batch

        return ItemStream(inputs, batches, sum(len(p) for p in parts))

    def _mix_generation(self, cfg: KGQAConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """Streamed LLM and mixed modes: `MixItemsStep`, then the LLM step when an entity asks (both
        writing their rejects after every earlier one, as the in-memory global steps)."""
        out.usage.update({"calls_sent": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "retries": 0, "reasks": 0})
        templates = inputs.extra["templates"]
        if templates is not None:
            out.prompt(templates.ref)
        out.prompt(load_prompt(cfg.llm_qa.prompt).ref)
        out.counters.update(inputs.extra["mix_counters"])
        steps: list[Step] = [MixItemsStep(templates, cfg.template_qa)]
        if inputs.extra["mix_asks"]:
            llm = ctx.llm_step("scenario", PassThroughScenarioWork(cfg.llm_qa, cfg.llm.model), cfg.llm, out)
            llm.whole_input_order = True  # type: ignore[attr-defined]
            steps.append(llm)
        return steps

    def protected_terms(self, cfg: KGQAConfig, inputs: Inputs) -> frozenset[str]:
        return protected_terms(inputs.items)

    def generation(self, cfg: KGQAConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """Template mode: a map step over batches of entities, then the questions across the graph (a
        global step holding every entity). LLM and mixed modes: the template share and the entities with
        no usable fact in the driver (`MixSplit`), one LLM request per usable entity on the workers
        (`ScenarioWork`), then the template records put back in front (`MixJoin`)."""
        if not cfg.uses_llm and "templates" in inputs.extra:  # streamed: the questions across the graph are items
            out.prompt(inputs.extra["templates"].ref)
            out.counters.update(inputs.extra["reverse_counters"])
            return [TemplateStep(inputs.extra["templates"], cfg.template_qa)]
        if not cfg.uses_llm:
            templates = load_templates(cfg.templates)
            out.prompt(templates.ref)
            return [TemplateStep(templates, cfg.template_qa), ReverseStep(templates, cfg.template_qa, inputs.items)]
        if "mix_counters" in inputs.extra:
            return self._mix_generation(cfg, inputs, ctx, out)
        out.usage.update({"calls_sent": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "retries": 0, "reasks": 0})
        template_part, llm_part = split_by_mix(inputs.items, cfg.shares, cfg.seed)
        split = MixSplit(cfg, load_templates(cfg.templates) if template_part else None)
        if split.templates is not None:
            out.prompt(split.templates.ref)
        prompt = load_prompt(cfg.llm_qa.prompt)
        out.prompt(prompt.ref)
        steps: list[Step] = [split]
        if any(entity_facts(e, cfg.llm_qa).values for e in llm_part):  # `--mix template=1` needs no LLM, model or endpoint
            steps.append(ctx.llm_step("scenario", ScenarioWork(cfg.llm_qa, cfg.llm.model), cfg.llm, out))
        steps.append(MixJoin(split))
        return steps

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


class MixSplit(GlobalStep):
    """LLM and mixed modes, in the driver: each entity to its mode (a seeded hash of its name); the
    template share's records are made here and held for `MixJoin`; entities with no usable fact are
    rejected; the usable LLM entities go on to the LLM step."""

    name = "mix"

    def __init__(self, cfg: KGQAConfig, templates: Any) -> None:
        self.cfg, self.templates = cfg, templates
        self.template_records: list[Any] = []

    def __call__(self, batch: list[Any]) -> StepResult:
        cfg, out = self.cfg, Collector()
        try:
            template_part, llm_part = split_by_mix(batch, cfg.shares, cfg.seed)
            if template_part and self.templates is not None:
                build_template_records(template_part, self.templates, cfg.template_qa, out=out)
                out.counters["entities_template"] = len(template_part)
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
            self.template_records = out.records
            return StepResult(usable, list(out.rejects), out.counters)
        finally:
            out.rejects.close()


class MixJoin(GlobalStep):
    """The template records in front of the LLM records, as one process writes them."""

    name = "join"

    def __init__(self, split: MixSplit) -> None:
        self.split = split

    def __call__(self, batch: list[Any]) -> StepResult:
        records, self.split.template_records = self.split.template_records + batch, []
        return StepResult(records)


@dataclass
class ScenarioWork:
    """The LLM step's work on a batch of usable entities (picklable): one request each, checked pairs."""

    cfg: LLMQAConfig
    model: str | None

    def __call__(self, entities: list[KGEntity], engine: Runner, out: Collector) -> None:
        prompt = load_prompt(self.cfg.prompt)
        results = engine.run(build_requests(entities, prompt, self.cfg), desc="scenario QA")
        build_llm_records(entities, results, prompt, self.cfg, self.model, out)


@dataclass
class NoFacts:
    """A streamed LLM entity with no usable fact: rejected by `MixItemsStep`, as `MixSplit` rejects it."""

    entity: KGEntity


@dataclass
class AskLLM:
    """A streamed LLM entity with usable facts: passed on to the LLM step."""

    entity: KGEntity


class MixItemsStep(MapStep):
    """Streamed LLM and mixed modes, per batch of the stream: template entities and `ReverseGroup`s ->
    records (`TemplateStep`), `NoFacts` -> rejects, `AskLLM` -> their entities, for the LLM step."""

    name = "mix"
    whole_input_order = True  # in memory `MixSplit`'s rejects follow every earlier one

    def __init__(self, templates: Any, config: TemplateQAConfig) -> None:
        self.templates, self.config = templates, config

    def __call__(self, batch: list[Any]) -> StepResult:
        made = [x for x in batch if not isinstance(x, (NoFacts, AskLLM))]
        result = TemplateStep(self.templates, self.config)(made) if made else StepResult([])
        records: list[Any] = list(result.records)
        rejects, counters = list(result.rejects), Counter(result.counters)
        for x in batch:
            if isinstance(x, NoFacts):
                counters["rejected.no_usable_facts"] += 1
                rejects.append(RejectRow(stage="build", reason="no_usable_facts",
                                         message=f"entity {x.entity.name!r} has no KG values to write questions from",
                                         source=entity_source(x.entity)))
            elif isinstance(x, AskLLM):
                records.append(x.entity)
        return StepResult(records, rejects, counters)


@dataclass
class PassThroughScenarioWork(ScenarioWork):
    """`ScenarioWork` in a stream that also carries the template records before it: they pass on first."""

    def __call__(self, batch: list[Any], engine: Runner, out: Collector) -> None:
        out.records.extend(x for x in batch if not isinstance(x, KGEntity))
        entities = [x for x in batch if isinstance(x, KGEntity)]
        if entities:
            super().__call__(entities, engine, out)
