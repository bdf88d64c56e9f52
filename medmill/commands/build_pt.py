"""medmill build-pt INPUT... --out DIR: texts, literature, dialogues, dataset dirs -> pretraining
documents; or --mix DIR=SHARE,... -> a token-ratio mixture of pretrain dirs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.pretrain.config import PretrainConfig
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

# PretrainConfig (builders/pretrain/, another change's) does not word these for documents yet
_DOCS = "Documents"
_QUALITY = "Running text"
_MIX = "Mixing"


def build_pt(
    inputs: list[Path] = typer.Argument(
        None, help="Text files or directories (.txt/.md/.pdf/.docx, JSON/JSONL with a text field or conversations), "
        "and dataset dirs (pretrain rows as they are, sft/preference rows as text).",
    ),
    out: str = OutOption,
    literature: list[Path] = typer.Option([], "--literature", help="Literature file (JSON/JSONL/CSV): title + abstract + conclusion per paper; repeatable."),
    doc_unit: Literal["file", "section", "paragraph"] = typer.Option("section", "--doc-unit", help="One document per file, section or paragraph.", rich_help_panel=_DOCS),
    max_doc_chars: int = typer.Option(4000, "--max-doc-chars", min=50, help="Longest document; longer ones are cut at paragraph, then sentence ends.", rich_help_panel=_DOCS),
    min_doc_chars: int = typer.Option(50, "--min-doc-chars", min=1, help="Shortest document kept (smaller sections/paragraphs join the next one).", rich_help_panel=_DOCS),
    t2s: bool = typer.Option(False, "--t2s", help="Convert Traditional to Simplified Chinese (OpenCC; pip install 'medmill[t2s]').", rich_help_panel=_DOCS),
    citations: Literal["keep", "strip"] = typer.Option("strip", "--citations", help="Citation marks like [11]: strip (default) or keep.", rich_help_panel=_DOCS),
    include: list[str] = typer.Option([], "--include", help="Glob of files to read inside directories; repeatable.", rich_help_panel=_DOCS),
    exclude: list[str] = typer.Option([], "--exclude", help="Glob of files to skip; repeatable.", rich_help_panel=_DOCS),
    text_field: str | None = typer.Option(None, "--text-field", help="Text field of JSON/JSONL records (default: text/content/正文/内容).", rich_help_panel=_DOCS),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Local Hugging Face tokenizer dir for token counts (default: an estimate from characters)."),
    boilerplate_min_docs: int = typer.Option(5, "--boilerplate-min-docs", min=0, help="Remove paragraphs found in at least this many documents (0 = off).", rich_help_panel=_QUALITY),
    min_cjk_share: float = typer.Option(0.2, "--min-cjk-share", min=0.0, max=1.0, help="Least share of CJK among letters (0 = off; use 0 for English corpora).", rich_help_panel=_QUALITY),
    max_symbol_share: float = typer.Option(0.2, "--max-symbol-share", min=0.0, max=1.0, help="Most share of symbols (0 = off).", rich_help_panel=_QUALITY),
    max_digit_share: float = typer.Option(0.3, "--max-digit-share", min=0.0, max=1.0, help="Most share of digits (0 = off).", rich_help_panel=_QUALITY),
    max_dup_line_share: float = typer.Option(0.3, "--max-dup-line-share", min=0.0, max=1.0, help="Most share of repeated lines (0 = off).", rich_help_panel=_QUALITY),
    min_mean_line_chars: float = typer.Option(8.0, "--min-mean-line-chars", min=0.0, help="Least mean line length (0 = off).", rich_help_panel=_QUALITY),
    mix: str | None = typer.Option(None, "--mix", help="Mix pretrain dirs by token share: DIR=0.3,DIR=0.7 (no INPUTs then).", rich_help_panel=_MIX),
    mix_tokens: int | None = typer.Option(None, "--mix-tokens", min=1, help="Total tokens of the mixture (default: the most no source exceeds --max-epochs for).", rich_help_panel=_MIX),
    max_epochs: float = typer.Option(3.0, "--max-epochs", min=0.01, help="Most epochs (repeats) of any source in a mixture.", rich_help_panel=_MIX),
    common: CommonBuildOptions = GENERATED,
    *,
    curation: CurationSettings,
) -> None:
    """Clean pretraining documents with repeated-paragraph removal, running-text rules, dedup and token counts; or mix pretrain dirs by token share."""
    t0 = time.perf_counter()
    from medmill.builders.core.run import run_build
    from medmill.builders.pretrain.build import MixBuilder, PretrainBuilder
    from medmill.builders.pretrain.config import MixConfig
    from medmill.builders.pretrain.mixing import parse_mix

    shared = dict(out=out, curation=curation, tokenizer=tokenizer)
    if mix:
        if inputs or literature:
            raise MedmillError("--mix mixes existing pretrain dirs; build them first, then mix them without INPUTs")
        entries = parse_mix(mix)
        cfg = common.config(MixConfig, inputs=[Path(e.name) for e in entries], shares={e.name: e.weight for e in entries},
                            total_tokens=mix_tokens, max_epochs=max_epochs, **shared)
        builder: MixBuilder | PretrainBuilder = MixBuilder()
    else:
        if not inputs and not literature:
            raise MedmillError("give INPUT files or directories (or --literature FILE, or --mix DIR=SHARE,...)")
        cfg = common.config(
            PretrainConfig,
            inputs=list(inputs or []) + list(literature),
            literature=literature,
            include=include,
            exclude=exclude,
            text_field=text_field,
            clean={"citations": citations},
            doc_unit=doc_unit,
            max_doc_chars=max_doc_chars,
            min_doc_chars=min_doc_chars,
            t2s=t2s,
            boilerplate_min_docs=boilerplate_min_docs,
            text_quality={
                "min_cjk_share": min_cjk_share, "max_symbol_share": max_symbol_share, "max_digit_share": max_digit_share,
                "max_dup_line_share": max_dup_line_share, "min_mean_line_chars": min_mean_line_chars,
            },
            **shared,
        )
        builder = PretrainBuilder()
    command = invocation(["build-pt", *map(str, inputs or []), "--out", str(out)])
    report = run_build(builder, cfg, command=command, progress=progress_bars, executor=common.executor())
    build_summary(f"build-pt {out}", report.manifest, report.figures, started=t0)


def register(app: typer.Typer) -> None:
    app.command("build-pt")(build_options(PretrainConfig, omit=("limit",))(curation_options(build_pt)))
