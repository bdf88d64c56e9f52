"""The book-qa builder (`medmill build-book-qa`): inputs -> cleaned chunks -> LLM questions and grounded
answers; run_build curates and writes them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from medmill.builders.book_qa import BUILDER, BUILDER_VERSION
from medmill.builders.book_qa.generate import (
    AnswerWork,
    QAConfig,
    QuestionWork,
    coverage,
    drop_near_duplicates,
    prompt_refs,
    usable_chunk_ids,
)
from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import LLMBuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import GlobalStep, Step, StepResult
from medmill.builders.readers.chunks import DocumentSummary, prepare_chunks
from medmill.builders.text.chunking import ChunkSettings
from medmill.builders.text.clean import CleanOptions
from medmill.schemas.errors import MedmillError


class BookQAConfig(LLMBuildConfig):
    include: list[str] = Field(default_factory=list, description="Glob of files to read inside directories.")
    exclude: list[str] = Field(default_factory=list, description="Glob of files to skip.")
    text_field: str | None = Field(None, description="Text field of JSON/JSONL records (default: text/content/正文/内容).")
    clean: CleanOptions = Field(default_factory=CleanOptions)
    chunking: ChunkSettings = Field(default_factory=ChunkSettings)
    qa: QAConfig = Field(default_factory=QAConfig)
    seed: int = Field(42, description="Seed of the splits.")
    val_size: float = Field(0.05, ge=0.0, lt=1.0, description="Share of records in the validation split (grouped by section).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the test split (grouped by section).")
    limit: int | None = Field(None, ge=1, description="Use only the first N chunks (trial runs).", json_schema_extra={"flag": "--limit-chunks"})


class BookQABuilder(Builder[BookQAConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = BookQAConfig

    def read(self, cfg: BookQAConfig, ctx: BuildContext) -> Inputs:
        if not cfg.llm.model:
            raise MedmillError("--llm-model is required (the model the endpoint serves)")
        prepared = prepare_chunks(cfg.inputs, cfg.include, cfg.exclude, cfg.text_field, cfg.clean, cfg.chunking,
                                  skip=ctx.own_paths)
        chunks = prepared.chunks[: cfg.limit] if cfg.limit else prepared.chunks
        if not chunks:
            raise MedmillError(
                f"no text chunks in the inputs ({len(prepared.rejects)} input item(s) rejected"
                + "".join(f"; {r.message}" for r in prepared.rejects[:3])
                + ")"
            )
        return Inputs(chunks, prepared.files, prepared.rejects, prepared.counts, {"documents": prepared.documents})

    def generation(self, cfg: BookQAConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """Questions per chunk (LLM, item-wise) -> near-duplicate questions across chunks (whole input)
        -> grounded answers per question (LLM, item-wise) -> chunk coverage counters."""
        prompts = prompt_refs(cfg.qa)
        return [
            ctx.llm_step("questions", QuestionWork(cfg.qa), cfg.llm, out, prompts=prompts),
            QuestionDedup(cfg.qa),
            ctx.llm_step("answers", AnswerWork(cfg.qa), cfg.llm, out),
            Coverage(usable_chunk_ids(inputs.items, cfg.qa)),
        ]

    def describe(self, cfg: BookQAConfig, inputs: Inputs, out: Collector) -> str:
        return describe(inputs.extra["documents"], cfg)

    def figures(self, cfg: BookQAConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c = manifest.counters
        rows: list[tuple[str, Any]] = [
            ("documents", c.get("documents", 0)),
            ("chunks", c.get("chunks", 0)),
            ("questions generated", c.get("questions_generated", 0)),
        ]
        rows += [(f"files in {k.split('.', 1)[1]}", v) for k, v in sorted(c.items()) if k.startswith("encoding.")]
        rows += [(k, v) for k, v in sorted(c.items()) if k.startswith("chunks_with_")]
        return rows


def describe(documents: list[DocumentSummary], cfg: BookQAConfig) -> str:
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


class QuestionDedup(GlobalStep):
    """Near-duplicate questions across every chunk: needs all candidates at once, so it runs in the driver."""

    name = "question_dedup"

    def __init__(self, config: QAConfig) -> None:
        self.config = config

    def __call__(self, batch: list[Any]) -> StepResult:
        kept, rejects = drop_near_duplicates(batch, self.config)
        return StepResult(kept, rejects)


class Coverage(GlobalStep):
    """`chunks_with_<n>_qa` counters over the usable chunks, once every answer is in."""

    name = "coverage"

    def __init__(self, usable: list[str]) -> None:
        self.usable = usable

    def __call__(self, batch: list[Any]) -> StepResult:
        return StepResult(batch, counters=coverage(self.usable, batch))
