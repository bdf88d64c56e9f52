"""One build-tasks run: read the task's inputs, make records, curate, write the dataset dir.

Wired through the shared build tail (`finish_build`); everything task-specific sits in the task
modules, so moving onto the build skeleton is a change of this one module.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.progress import Progress, no_progress
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.llm.types import LLMSettings
from medmill.builders.readers.chunks import prepare_chunks
from medmill.builders.readers.kg import read_kg
from medmill.builders.tasks.cls import ClsConfig
from medmill.builders.tasks.common import TaskOutput
from medmill.builders.tasks.mcq import MCQConfig
from medmill.builders.tasks.ner import NERConfig
from medmill.builders.tasks.rc import RCConfig
from medmill.builders.text.chunking import ChunkSettings
from medmill.schemas import RejectRow
from medmill.schemas.errors import MedmillError

Task = Literal["mcq", "ner", "rc", "cls"]
TASKS: tuple[str, ...] = ("mcq", "ner", "rc", "cls")

DESCRIPTIONS = {
    "mcq": "Single-choice questions generated from a medical knowledge graph without an LLM: the correct "
           "option is one of an entity's values for a relation, the distractors are values of the same "
           "relation held by other entities and not by this one; every answer key was verified against the "
           "KG. A KG that omits a true fact can make a distractor true in reality.",
    "ner": "Entity-extraction examples: text chunks tagged with the entity lexicon of a medical knowledge "
           "graph (entity names by type, relation values by the relation's type), longest match first, "
           "written as 类型:实体，实体；… like TCMChat's NER benchmark. Entities the KG does not list are not tagged.",
    "rc": "Reading-comprehension questions written by an LLM from text chunks, in TCMChat's <text>…<question>… "
          "layout; every answer is a span of its text, verified verbatim.",
    "cls": "Department classification: patients' questions from dialogue corpora labelled with the department "
           "that answered them, as instructions listing the label set; the answer is the department.",
}


class TasksBuild(BaseModel):
    """The typed configuration of `medmill build-tasks`; the manifest's params."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    inputs: list[Path] = Field(min_length=1)
    out: Path
    kg: list[Path] = Field(default_factory=list)  # ner: the lexicon's KG
    mcq: MCQConfig = Field(default_factory=MCQConfig)
    ner: NERConfig = Field(default_factory=NERConfig)
    rc: RCConfig = Field(default_factory=RCConfig)
    cls: ClsConfig = Field(default_factory=ClsConfig)
    chunking: ChunkSettings = Field(default_factory=lambda: ChunkSettings(chunk_size=400, chunk_overlap=0))
    seed: int = 42
    val_size: float = Field(0.0, ge=0.0, lt=1.0)
    test_size: float = Field(0.1, ge=0.0, lt=1.0)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    llm: LLMSettings | None = None
    curation: CurationSettings = Field(default_factory=CurationSettings)


def params_of(cfg: TasksBuild) -> dict[str, Any]:
    """Only the settings of the task that ran (and never the LLM settings: the manifest's `llm` has them)."""
    others = {t for t in TASKS if t != cfg.task}
    drop = {"out", "llm", *others} | ({"chunking"} if cfg.task in ("mcq", "cls") else set())
    return cfg.model_dump(mode="json", exclude=drop)


def run_tasks(cfg: TasksBuild, *, command: str, progress: Progress = no_progress) -> tuple[Manifest, dict[str, Any]]:
    t0 = time.perf_counter()
    counters: Counter = Counter()
    rejects: list[RejectRow] = []
    files: list[Path] = []
    prompts: list[dict[str, str]] = []
    llm_info: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    if cfg.task == "mcq":
        from medmill.builders.tasks.mcq import build_mcq

        read = read_kg(cfg.inputs, exclude=[cfg.out])
        files, rejects, counters = list(read.files), list(read.rejects), Counter(read.counters)
        t1 = time.perf_counter()
        result = build_mcq(read.entities, cfg.mcq.model_copy(update={"seed": cfg.seed}))
        figures = {"entities read": len(read.entities), "answer keys verified": result.counters["keys_verified"]}
    elif cfg.task == "ner":
        from medmill.builders.tasks.ner import build_ner

        if not cfg.kg:
            raise MedmillError("--task ner needs --kg KG (the entity lexicon); INPUT… are the texts to tag")
        read = read_kg(cfg.kg, exclude=[cfg.out])
        chunks = prepare_chunks(cfg.inputs, settings=cfg.chunking)
        files = list(read.files) + list(chunks.files)
        rejects = list(read.rejects) + list(chunks.rejects)
        counters = Counter(read.counters) + Counter(chunks.counts)
        t1 = time.perf_counter()
        result = build_ner(chunks.chunks, read.entities, cfg.ner)
        figures = {"lexicon terms": result.counters["lexicon.terms"], "text chunks": len(chunks.chunks),
                   "entities tagged": result.counters["entities_tagged"]}
    elif cfg.task == "cls":
        from medmill.builders.readers.department_csv import read_department_csv
        from medmill.builders.tasks.cls import build_cls

        read_cls = read_department_csv(cfg.inputs, exclude=[cfg.out])
        files, rejects, counters = list(read_cls.files), list(read_cls.rejects), Counter(read_cls.counters)
        t1 = time.perf_counter()
        result = build_cls(read_cls.questions, cfg.cls.model_copy(update={"seed": cfg.seed}))
        if not result.records and not result.rejects:
            raise MedmillError(f"no department has {cfg.cls.min_per_label} questions; lower --min-per-label")
        figures = {"questions read": len(read_cls.questions), "labels": result.counters["labels"]}
    else:
        result, t1 = _run_rc(cfg, counters, rejects, files, prompts, llm_info, usage, figures, progress)
    t2 = time.perf_counter()
    counters += result.counters
    counters.update({k: v for k, v in result.counters.items() if v == 0})
    info = BuildInfo(
        kind="sft", builder=f"tasks_{cfg.task}", command=command, params=params_of(cfg), inputs=files, seed=cfg.seed,
        val_size=cfg.val_size, test_size=cfg.test_size, license=cfg.license, source_licenses=cfg.source_licenses,
        counters=counters, prompts=prompts, llm=llm_info, usage=usage,
        timings={"read": t1 - t0, "generate": t2 - t1}, description=DESCRIPTIONS[cfg.task],
    )
    manifest = finish_build(cfg.out, result.records, rejects + result.rejects, info,
                            curation_steps("sft", cfg.curation), started=t0)
    figures["records generated"] = len(result.records)
    return manifest, figures


def _run_rc(cfg: TasksBuild, counters: Counter, rejects: list[RejectRow], files: list[Path],
            prompts: list[dict[str, str]], llm_info: dict[str, Any], usage: dict[str, Any],
            figures: dict[str, Any], progress: Progress) -> tuple[TaskOutput, float]:
    from medmill.builders.llm.engine import LLMEngine
    from medmill.builders.llm.prompts import load_prompt
    from medmill.builders.tasks.rc import build_rc, requests_for

    if cfg.llm is None or not cfg.llm.model:
        raise MedmillError("--task rc needs --llm-model (the model the endpoint serves)")
    chunks = prepare_chunks(cfg.inputs, settings=cfg.chunking)
    if not chunks.chunks:
        raise MedmillError(f"no text chunks in the inputs ({len(chunks.rejects)} input item(s) rejected)")
    files += chunks.files
    rejects += chunks.rejects
    counters.update(chunks.counts)
    prompt = load_prompt(cfg.rc.prompt)
    prompts.append(prompt.ref)
    t1 = time.perf_counter()
    with LLMEngine(cfg.llm, cfg.out, progress=progress) as engine:
        results = engine.run(requests_for(chunks.chunks, prompt, cfg.rc), desc="reading comprehension")
        llm_info.update(engine.describe())
        usage.update(engine.usage)
    result = build_rc(chunks.chunks, results, prompt, cfg.rc, cfg.llm.model)
    figures.update({"text chunks": len(chunks.chunks),
                    "LLM calls sent / cached": f"{usage['calls_sent']} / {usage['cache_hits']}",
                    "answer spans verified": len(result.records)})
    return result, t1
