"""The tasks builder (`medmill build-tasks --task mcq|ner|rc|cls`): one task's reader and generator
per run, each writing an sft dir with a test split for `medmill eval`; run_build curates and writes.
Every task streams (`--executor local`, the default: records made on the workers and written as they
come); rc builds in memory when its LLM concurrency is below the worker count (see `read_stream`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medmill.builders.core.builder import BuildContext, Builder, Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import LLMBuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import Step
from medmill.builders.readers.kg import read_kg
from medmill.builders.tasks import BUILDER, BUILDER_VERSION
from medmill.builders.tasks.cls import ClsConfig
from medmill.builders.tasks.common import TaskOutput
from medmill.builders.tasks.mcq import MCQConfig
from medmill.builders.tasks.ner import NERConfig
from medmill.builders.tasks.rc import RCConfig
from medmill.builders.text.chunking import ChunkSettings
from medmill.schemas.errors import MedmillError

Task = Literal["mcq", "ner", "rc", "cls"]
TASKS: tuple[str, ...] = ("mcq", "ner", "rc", "cls")

DESCRIPTIONS = {
    "mcq": "Single-choice questions generated from a medical knowledge graph without an LLM: the correct "
           "option is one of an entity's values for a relation, the distractors are values of the same "
           "relation held by other entities and not by this one; every answer key was verified against the "
           "KG. A KG that omits a true fact can make a distractor true in reality. Splits are grouped by entity.",
    "ner": "Entity-extraction examples: text chunks tagged with the entity lexicon of a medical knowledge "
           "graph (entity names by type, relation values by the relation's type), longest match first, "
           "written as 类型:实体，实体；… like TCMChat's NER benchmark. Entities the KG does not list are not tagged.",
    "rc": "Reading-comprehension questions written by an LLM from text chunks, in TCMChat's <text>…<question>… "
          "layout; every answer is a span of its text, verified verbatim. Splits are grouped by chunk.",
    "cls": "Department classification: patients' questions from dialogue corpora labelled with the department "
           "that answered them, as instructions listing the label set; the answer is the department.",
}


class TasksConfig(LLMBuildConfig):
    """build-tasks: `inputs` are KG files (mcq), texts (ner, rc) or department CSVs (cls)."""

    task: Task = Field(description="mcq, ner, rc or cls.")
    kg: list[Path] = Field(default_factory=list, description="ner: the knowledge graph whose entity lexicon tags the texts.")
    mcq: MCQConfig = Field(default_factory=MCQConfig)
    ner: NERConfig = Field(default_factory=NERConfig)
    rc: RCConfig = Field(default_factory=RCConfig)
    cls: ClsConfig = Field(default_factory=ClsConfig)
    chunking: ChunkSettings = Field(default_factory=lambda: ChunkSettings(chunk_size=400, chunk_overlap=0))
    seed: int = Field(42, description="Seed of option order, sampling and splits.")
    test_size: float = Field(
        0.1, ge=0.0, lt=1.0,
        description="Share of records in the test (eval) split; grouped by entity (mcq), chunk (ner/rc) or row (cls).",
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N entities / chunks / questions (trial runs).")

    @model_validator(mode="after")
    def _needs(self) -> TasksConfig:
        if self.task == "ner" and not self.kg:
            raise ValueError("--task ner needs --kg KG (the entity lexicon); INPUT… are the texts to tag")
        return self


class TasksBuilder(Builder[TasksConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = TasksConfig

    # --- read ---------------------------------------------------------------------------------------

    def read(self, cfg: TasksConfig, ctx: BuildContext) -> Inputs:
        if cfg.task == "mcq":
            kg = read_kg(cfg.inputs, exclude=ctx.own_paths)
            return self._limited(cfg, Inputs(kg.entities, kg.files, kg.rejects, Counter(kg.counters)))
        if cfg.task == "cls":
            from medmill.builders.readers.department_csv import read_department_csv

            read = read_department_csv(cfg.inputs, exclude=ctx.own_paths)
            return self._limited(cfg, Inputs(read.questions, read.files, read.rejects, Counter(read.counters)))
        if cfg.task == "rc" and not cfg.llm.model:
            raise MedmillError("--task rc needs --llm-model (the model the endpoint serves)")
        from medmill.builders.readers.chunks import prepare_chunks

        chunks = prepare_chunks(cfg.inputs, settings=cfg.chunking)
        if not chunks.chunks:
            raise MedmillError(f"no text chunks in the inputs ({len(chunks.rejects)} input item(s) rejected)")
        inputs = Inputs(chunks.chunks, list(chunks.files), list(chunks.rejects), Counter(chunks.counts))
        if cfg.task == "ner":
            kg = read_kg(cfg.kg, exclude=ctx.own_paths)
            inputs.files += kg.files
            inputs.rejects += kg.rejects
            inputs.counters.update(kg.counters)
            inputs.extra["entities"] = kg.entities
        return self._limited(cfg, inputs)

    def read_stream(self, cfg: TasksConfig, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream | None:
        """Every task streams its records (generation is map steps; the items, a KG, text chunks or the
        questions of a CSV, are in memory anyway). cls decides in the driver what the in-memory global
        step decides (which questions of which label become records, in label order: `select_by_label`);
        only the records are made on the workers. rc's LLM step runs on every worker, each engine with
        its share of the limits, in batches of about two rounds of a share; with a concurrency below the
        worker count (or a local transformers model, loaded by one worker at a time) the in-memory
        executor runs it on fewer workers instead, so rc builds in memory then."""
        if cfg.task == "rc":
            if cfg.llm.backend == "transformers" or cfg.llm.concurrency < ctx.workers:
                return None  # fewer engines than workers: the in-memory executor runs the step on fewer workers
            # batches of what one engine runs in two rounds of its share, so every worker gets some
            share = max(1, cfg.llm.concurrency // ctx.workers)
            batch_items = next(n for n in range(min(batch_items, 2 * share), 0, -1) if batch_items % n == 0)
        from medmill.builders.streaming.build_stream import list_stream

        inputs = self.read(cfg, ctx)
        if cfg.task == "cls":
            inputs = self._cls_plan(cfg, inputs)
        return list_stream(inputs, batch_items)

    @staticmethod
    def _cls_plan(cfg: TasksConfig, inputs: Inputs) -> Inputs:
        """What `ClsFilterStep` and `ClsRecordsStep` decide over every question, without the records:
        the filter's rejects follow the read rejects (as in memory), the items become the chosen
        questions in record order, and the counters wait for `generation` in `extra`."""
        from medmill.builders.tasks.cls import ClsFilterStep, label_set, select_by_label

        cls = cfg.cls.model_copy(update={"seed": cfg.seed})
        labels, counts = label_set(inputs.items, cls)
        if not labels:
            raise MedmillError(f"no department has {cfg.cls.min_per_label} questions; lower --min-per-label")
        kept = ClsFilterStep(cls, counts)(inputs.items)
        chosen, counters = select_by_label(kept.records, labels, cls)
        counters.update(kept.counters)
        counters["labels"] = len(labels)
        inputs.rejects += kept.rejects
        inputs.items_read = len(inputs.items)
        inputs.items = chosen
        inputs.extra.update(cls_labels=labels, cls_counters=counters)
        return inputs

    @staticmethod
    def _limited(cfg: TasksConfig, inputs: Inputs) -> Inputs:
        if cfg.limit:
            inputs.items = inputs.items[: cfg.limit]
        return inputs

    # --- generate -----------------------------------------------------------------------------------

    def generation(self, cfg: TasksConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """mcq, ner, cls: map steps over the items (option pools, the lexicon, the label set made here,
        from the whole input); rc: an LLM map step, one request per chunk, on the workers."""
        if cfg.task == "mcq":
            from medmill.builders.tasks.mcq import MCQStep, option_pools

            mcq = cfg.mcq.model_copy(update={"seed": cfg.seed})
            return [MCQStep(mcq, option_pools(inputs.items, mcq))]
        if cfg.task == "ner":
            from medmill.builders.tasks.ner import NERStep, build_lexicon

            lexicon = TaskOutput()
            step = NERStep(cfg.ner, build_lexicon(inputs.extra["entities"], cfg.ner, lexicon))
            out.counters.update(lexicon.counters)
            return [step]
        if cfg.task == "cls" and "cls_labels" in inputs.extra:  # streamed: the choice was made in `_cls_plan`
            from medmill.builders.tasks.cls import ClsRecordStep

            out.counters.update(inputs.extra["cls_counters"])
            return [ClsRecordStep(cfg.cls.model_copy(update={"seed": cfg.seed}), inputs.extra["cls_labels"])]
        if cfg.task == "cls":
            from medmill.builders.tasks.cls import ClsFilterStep, ClsRecordsStep, label_set

            cls = cfg.cls.model_copy(update={"seed": cfg.seed})
            labels, counts = label_set(inputs.items, cls)
            if not labels:
                raise MedmillError(f"no department has {cfg.cls.min_per_label} questions; lower --min-per-label")
            return [ClsFilterStep(cls, counts), ClsRecordsStep(cls, labels)]
        from medmill.builders.llm.prompts import load_prompt
        from medmill.builders.tasks.rc import RCWork

        return [ctx.llm_step("rc", RCWork(cfg.rc, cfg.llm.model), cfg.llm, out, prompts=[load_prompt(cfg.rc.prompt).ref])]

    # --- report -------------------------------------------------------------------------------------

    def params(self, cfg: TasksConfig) -> dict[str, Any]:
        """Only the settings of the task that ran; no LLM settings (the manifest's `llm` has them)."""
        drop = {"out", "llm", *(t for t in TASKS if t != cfg.task)}
        if cfg.task in ("mcq", "cls"):
            drop |= {"chunking", "kg"}
        return cfg.model_dump(mode="json", exclude=drop)

    def describe(self, cfg: TasksConfig, inputs: Inputs, out: Collector) -> str:
        return DESCRIPTIONS[cfg.task]

    def figures(self, cfg: TasksConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c = out.counters
        rows: list[tuple[str, Any]] = [("task", cfg.task)]
        if cfg.task == "mcq":
            rows += [("entities read", inputs.items_read), ("answer keys verified", c["keys_verified"])]
        elif cfg.task == "ner":
            rows += [("lexicon terms", c["lexicon.terms"]), ("text chunks", inputs.items_read),
                     ("entities tagged", c["entities_tagged"])]
        elif cfg.task == "cls":
            rows += [("questions read", inputs.items_read), ("labels", c["labels"])]
        else:
            u = out.usage
            rows += [("text chunks", inputs.items_read), ("LLM calls sent / cached", f"{u['calls_sent']} / {u['cache_hits']}"),
                     ("answer spans verified", out.generated)]
        rows.append(("records generated", out.generated))
        return rows
