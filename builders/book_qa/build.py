"""The whole build-book-qa run: inputs -> chunks -> LLM questions and grounded answers -> curated dataset dir."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.book_qa.generate import BUILDER, BookQAConfig, build_book_qa
from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.llm.types import LLMSettings
from medmill.builders.readers.chunks import DocumentSummary, prepare_chunks
from medmill.builders.text.chunking import ChunkSettings
from medmill.builders.text.clean import CleanOptions
from medmill.schemas.errors import MedmillError


class BookQABuild(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Path]
    out: Path
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    text_field: str | None = None
    clean: CleanOptions = Field(default_factory=CleanOptions)
    chunking: ChunkSettings = Field(default_factory=ChunkSettings)
    qa: BookQAConfig = Field(default_factory=BookQAConfig)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    curation: CurationSettings = Field(default_factory=CurationSettings)
    limit_chunks: int | None = Field(None, ge=1)
    seed: int = 42
    val_size: float = Field(0.05, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"


def run_book_qa(cfg: BookQABuild, command: str = "medmill build-book-qa") -> Manifest:
    from medmill.builders.llm.engine import LLMEngine

    if not cfg.llm.model:
        raise MedmillError("--llm-model is required (the model the endpoint serves)")
    t0 = time.perf_counter()
    prepared = prepare_chunks(cfg.inputs, cfg.include, cfg.exclude, cfg.text_field, cfg.clean, cfg.chunking)
    chunks = prepared.chunks[: cfg.limit_chunks] if cfg.limit_chunks else prepared.chunks
    if not chunks:
        raise MedmillError(
            f"no text chunks in the inputs ({len(prepared.rejects)} input item(s) rejected"
            + "".join(f"; {r.message}" for r in prepared.rejects[:3])
            + ")"
        )
    t1 = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    with LLMEngine(cfg.llm, cfg.out) as engine:
        qa = build_book_qa(chunks, cfg.qa, engine)
        llm_info, usage = engine.describe(), engine.usage
    counters = Counter(prepared.counts)
    counters.update(qa.counters)
    info = BuildInfo(
        kind="sft",
        builder=BUILDER,
        command=command,
        params=_params(cfg),
        inputs=prepared.files,
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        counters=counters,
        prompts=qa.prompts,
        llm=llm_info,
        usage=usage,
        timings={"read_and_chunk": t1 - t0, "llm": time.perf_counter() - t1},
        description=describe(prepared.documents, cfg),
    )
    return finish_build(
        cfg.out, qa.records, prepared.rejects + qa.rejects, info, curation_steps("sft", cfg.curation)
    )


def _params(cfg: BookQABuild) -> dict[str, Any]:
    data = cfg.model_dump(mode="json", exclude={"inputs", "out", "llm", "curation"})
    data["curation"] = cfg.curation.model_dump(mode="json")
    return data


def describe(documents: list[DocumentSummary], cfg: BookQABuild) -> str:
    """Card summary: the method and the source files with their texts and chunk counts."""
    files: dict[str, list[DocumentSummary]] = {}
    for d in documents:
        files.setdefault(d.name.split("#", 1)[0], []).append(d)
    lines = [
        "Question-answer pairs written by an LLM from chunks of guideline and textbook texts. Each answer was "
        "written from its chunk and the question, and kept only when at least one `reference` sentence it cites "
        f"was found verbatim in the chunk and at least {cfg.qa.min_overlap:.0%} of its character bigrams occur in "
        "the chunk; meta-talk, multiple-choice and non-self-contained questions and near-duplicate questions "
        f"(bigram Jaccard >= {cfg.qa.dedup_threshold}) were removed. `meta` keeps the chunk id, heading path, "
        "question type and verified references.",
        "",
        f"Source documents ({len(files)} files, {len(documents)} texts):",
        "",
        "| file | format | encoding | texts | characters after cleaning | chunks |",
        "|---|---|---|---|---|---|",
    ]
    for name, docs in list(files.items())[:200]:
        d = docs[0]
        chars, chunks = sum(x.chars for x in docs), sum(x.chunks for x in docs)
        lines.append(f"| `{name}` | {d.format} | {d.encoding or '-'} | {len(docs)} | {chars} | {chunks} |")
    if len(files) > 200:
        lines.append(f"| … {len(files) - 200} more files | | | | | |")
    return "\n".join(lines)
