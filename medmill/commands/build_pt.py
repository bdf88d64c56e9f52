"""medmill build-pt INPUT... --out DIR: texts, literature, dialogues, dataset dirs -> pretraining
documents; or --mix DIR=SHARE,... -> a token-ratio mixture of pretrain dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._common import build_config, parse_source_licenses
from medmill.commands._curation_options import curation_options
from medmill.config import ConfigOption
from medmill.console import build_summary, progress_bars
from medmill.invocation import invocation
from medmill.schemas.errors import MedmillError

_DOCS = "Documents"
_QUALITY = "Running text"
_MIX = "Mixing"


def build_pt(
    inputs: list[Path] = typer.Argument(
        None, help="Text files or directories (.txt/.md/.pdf/.docx, JSON/JSONL with a text field or conversations), "
        "and dataset dirs (pretrain rows as they are, sft/preference rows as text).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset dir."),
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
    seed: int = typer.Option(42, "--seed", help="Seed of mixing and splits."),
    val_size: float = typer.Option(0.02, "--val-size", help="Share of documents in the validation split (grouped by file and chapter)."),
    test_size: float = typer.Option(0.0, "--test-size", help="Share of documents in the test split."),
    license: str = typer.Option("other", "--license", help="License id written to the dataset card."),
    source_license: list[str] = typer.Option([], "--source-license", help="FILE=LICENSE of an input; repeatable."),
    config: Path | None = ConfigOption,
    *,
    curation: CurationSettings,
) -> None:
    """Clean pretraining documents with repeated-paragraph removal, running-text rules, dedup and token counts; or mix pretrain dirs by token share."""
    from medmill.builders.core.run import run_build
    from medmill.builders.pretrain.build import MixBuilder, PretrainBuilder
    from medmill.builders.pretrain.config import MixConfig, PretrainConfig
    from medmill.builders.pretrain.mixing import parse_mix

    common = dict(out=out, curation=curation, seed=seed, val_size=val_size, test_size=test_size, license=license,
                  source_licenses=parse_source_licenses(source_license), tokenizer=tokenizer)
    if mix:
        if inputs or literature:
            raise MedmillError("--mix mixes existing pretrain dirs; build them first, then mix them without INPUTs")
        entries = parse_mix(mix)
        cfg = build_config(MixConfig, inputs=[Path(e.name) for e in entries], shares={e.name: e.weight for e in entries},
                           total_tokens=mix_tokens, max_epochs=max_epochs, **common)
        builder: MixBuilder | PretrainBuilder = MixBuilder()
    else:
        if not inputs and not literature:
            raise MedmillError("give INPUT files or directories (or --literature FILE, or --mix DIR=SHARE,...)")
        cfg = build_config(
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
            **common,
        )
        builder = PretrainBuilder()
    command = invocation(["build-pt", *map(str, inputs or []), "--out", str(out)])
    report = run_build(builder, cfg, command=command, progress=progress_bars)
    build_summary(f"build-pt {out}", report.manifest, report.figures)


def register(app: typer.Typer) -> None:
    app.command("build-pt")(curation_options(build_pt))
