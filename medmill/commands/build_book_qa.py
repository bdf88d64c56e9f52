"""medmill build-book-qa INPUT... --out DIR: guideline / textbook texts -> grounded QA (sft)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Literal

import typer

from medmill.builders.book_qa.build import BookQAConfig
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._llm_options import llm_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation

_TEXT = "Text"


def parse_question_types(value: str) -> list[str]:
    """'治疗,诊断' / '治疗，诊断、预后' / a YAML list from --config (which arrives as "['治疗', '诊断']") -> names."""
    names = [t.strip().strip("[]'\" ") for t in re.split(r"[,，、;；]", value)]
    return [t for t in names if t]


def build_book_qa(
    inputs: list[Path] = typer.Argument(
        ..., help="Text files or directories: .txt/.md (utf-8/gb18030), JSON arrays of strings, JSON Lines with a "
        "text field, .pdf ([pdf] extra), .docx ([docx] extra)."
    ),
    out: str = OutOption,
    questions_per_chunk: int = typer.Option(3, "--questions-per-chunk", min=1, max=20, help="Questions asked per chunk."),
    question_types: str = typer.Option(
        "概念,机制,诊断,鉴别诊断,治疗,用药剂量,注意事项,预后", "--question-types",
        help="Comma-separated question types the model may choose from.",
    ),
    chunk_size: int = typer.Option(2000, "--chunk-size", min=1, help="Chunk size in --chunk-unit.", rich_help_panel=_TEXT),
    chunk_overlap: int = typer.Option(200, "--chunk-overlap", min=0, help="Overlap of split sections.", rich_help_panel=_TEXT),
    chunk_unit: Literal["chars", "tokens"] = typer.Option("chars", "--chunk-unit", help="Count chunk size in characters or tokens.", rich_help_panel=_TEXT),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Local tokenizer dir for --chunk-unit tokens.", rich_help_panel=_TEXT),
    include: list[str] = typer.Option([], "--include", help="Glob of files to read inside directories; repeatable.", rich_help_panel=_TEXT),
    exclude: list[str] = typer.Option([], "--exclude", help="Glob of files to skip; repeatable.", rich_help_panel=_TEXT),
    text_field: str | None = typer.Option(None, "--text-field", help="Text field of JSON/JSONL records (default: text/content/正文/内容).", rich_help_panel=_TEXT),
    citations: Literal["keep", "strip"] = typer.Option("strip", "--citations", help="Citation marks like [11]: strip (default) or keep.", rich_help_panel=_TEXT),
    min_overlap: float = typer.Option(0.5, "--min-overlap", min=0.0, max=1.0, help="Least share of an answer's character bigrams found in its chunk."),
    question_dedup: float = typer.Option(0.7, "--question-dedup", min=0.01, max=1.0, help="Bigram Jaccard at which questions count as near-duplicates."),
    common: CommonBuildOptions = GENERATED,
    *,
    llm: LLMSettings,
    curation: CurationSettings,
) -> None:
    """Ask an LLM for diverse questions per text chunk, answer each from its chunk with verified references."""
    from medmill.builders.book_qa.build import BookQABuilder
    from medmill.builders.core.run import run_build

    t0 = time.perf_counter()
    cfg = common.config(
        BookQAConfig,
        inputs=inputs,
        out=out,
        include=include,
        exclude=exclude,
        text_field=text_field,
        clean={"citations": citations},
        chunking={"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "unit": chunk_unit, "tokenizer": tokenizer},
        qa={
            "questions_per_chunk": questions_per_chunk,
            "question_types": parse_question_types(question_types),
            "min_overlap": min_overlap,
            "dedup_threshold": question_dedup,
        },
        llm=llm,
        curation=curation,
    )
    command = invocation(["build-book-qa", *map(str, inputs), "--out", str(out)])
    report = run_build(BookQABuilder(), cfg, command=command, progress=progress_bars, executor=common.executor())
    build_summary(f"build-book-qa {out}", report.manifest, report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-book-qa")(build_options(BookQAConfig, omit=("source_licenses",))(curation_options(llm_options(build_book_qa))))
