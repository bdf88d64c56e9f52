"""The whole build-lit-qa run: literature files -> LLM QA pairs or dialogues -> curated dataset dir."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.lit_qa.generate import BUILDER, LitQAConfig, build_lit_qa
from medmill.builders.llm.types import LLMSettings
from medmill.builders.readers.literature import read_literature
from medmill.schemas.errors import MedmillError


class LitQABuild(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Path]
    out: Path
    field_map: dict[str, str] = Field(default_factory=dict)
    lit: LitQAConfig = Field(default_factory=LitQAConfig)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    curation: CurationSettings = Field(default_factory=CurationSettings)
    limit: int | None = Field(None, ge=1)
    seed: int = 42
    val_size: float = Field(0.05, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"


def run_lit_qa(cfg: LitQABuild, command: str = "medmill build-lit-qa") -> Manifest:
    from medmill.builders.llm.engine import LLMEngine

    if not cfg.llm.model:
        raise MedmillError("--llm-model is required (the model the endpoint serves)")
    t0 = time.perf_counter()
    read = read_literature(cfg.inputs, cfg.field_map)
    papers = read.records[: cfg.limit] if cfg.limit else read.records
    if not papers:
        raise MedmillError(
            f"no usable literature record in the inputs ({len(read.rejects)} rejected while reading"
            + "".join(f"; {r.source.file}:{r.source.line or '-'} {r.message}" for r in read.rejects[:3])
            + ")"
        )
    t1 = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    with LLMEngine(cfg.llm, cfg.out) as engine:
        result = build_lit_qa(papers, cfg.lit, engine)
        llm_info, usage = engine.describe(), engine.usage
    counters = Counter({"papers": len(papers), "papers_rejected_at_read": len(read.rejects)})
    counters.update(result.counters)
    info = BuildInfo(
        kind="sft",
        builder=BUILDER,
        command=command,
        params=cfg.model_dump(mode="json", exclude={"inputs", "out", "llm"}),
        inputs=read.files,
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        counters=counters,
        prompts=result.prompts,
        llm=llm_info,
        usage=usage,
        timings={"read": t1 - t0, "llm": time.perf_counter() - t1},
        description=_describe(cfg, len(papers)),
    )
    return finish_build(
        cfg.out, result.records, read.rejects + result.rejects, info, curation_steps("sft", cfg.curation)
    )


def _describe(cfg: LitQABuild, papers: int) -> str:
    if cfg.lit.style == "qa":
        what = (
            f"Question-answer pairs written by an LLM from the conclusions of {papers} papers; each answer was kept "
            "only when a `reference` it quotes was found verbatim in the paper's conclusion or abstract and at least "
            f"{cfg.lit.min_overlap:.0%} of its character bigrams occur in the paper."
        )
    else:
        what = (
            f"Multi-turn patient-doctor dialogues ({cfg.lit.turns_min}-{cfg.lit.turns_max} patient turns) written by "
            f"an LLM from the conclusions of {papers} papers, stored as message lists. The doctor turns together had "
            f"to share at least {cfg.lit.dialogue_min_overlap:.0%} of their character bigrams with the paper; "
            "`meta.cites_paper` says whether a doctor turn names the paper."
        )
    return (
        f"{what} Splits are grouped by paper (`source.group`), so no paper straddles train and validation; "
        "`meta.paper` names the paper (title, year, journal, DOI) each record rests on."
    )
