"""medmill build-dialogue INPUT... --out DIR: doctor–patient dialogue corpora -> clean multi-turn SFT records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.dialogue.build import DialogueConfig
from medmill.commands._build_options import GENERATED, CommonBuildOptions, build_options
from medmill.commands._curation_options import curation_options
from medmill.commands._run_options import OutOption
from medmill.console import build_summary, console, progress_bars
from medmill.invocation import invocation

# DialogueConfig (builders/dialogue/, another change's) does not word these for dialogues yet
FORMAT_HELP = ("auto (detected from content), toyhom (CSV or .txt), alpaca, icliniq, sharegpt, openai, bentsao, "
               "medicalgpt-reward, dataset (a medmill sft dir)")


def build_dialogue(
    inputs: list[Path] = typer.Argument(..., help="Dialogue files or folders (several per run); medmill sft dataset dirs too."),
    out: str = OutOption,
    format: str = typer.Option("auto", "--format", help=f"Input format: {FORMAT_HELP}."),
    answer_field: str = typer.Option("answer_icliniq", "--answer-field", help="iCliniq answer used as the doctor turn: icliniq, chatgpt, chatdoctor (or the key)."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System message of every record (replaces a corpus's own)."),
    department_prompt: bool = typer.Option(False, "--department-prompt", help="System message 现在你是一名<科室>医生… from the record's department (Toyhom)."),
    min_chars: int = typer.Option(2, "--min-chars", help="Shortest patient or doctor turn kept (characters, whitespace excluded)."),
    max_chars: int = typer.Option(16_000, "--max-chars", help="Longest conversation kept (characters, whitespace excluded)."),
    language: str = typer.Option("auto", "--language", help="Expected language: auto (each file's majority), zh, en, any."),
    strip_templates: bool = typer.Option(True, "--strip-templates/--keep-templates", help="Remove templated greetings and sign-offs from doctor turns."),
    lexicon: Path | None = typer.Option(None, "--lexicon", help="Your own openers / sign-offs / placeholders YAML (shape of medmill's dialogue lexicon.yaml)."),
    merge_prefixes: bool = typer.Option(True, "--merge-prefixes/--keep-prefixes", help="Keep each conversation once, in its longest form."),
    common: CommonBuildOptions = GENERATED,
    *,
    curation: CurationSettings,
) -> None:
    """Turn doctor–patient dialogue corpora into clean multi-turn conversations (formats detected per file)."""
    from medmill.builders.core.run import run_build
    from medmill.builders.dialogue.build import DialogueBuilder

    t0 = time.perf_counter()
    cfg = common.config(
        DialogueConfig,
        inputs=inputs, out=out,
        read={"format": format, "answer_field": answer_field, "merge_prefixes": merge_prefixes},
        clean={"min_chars": min_chars, "max_chars": max_chars, "language": language,
               "strip_templates": strip_templates, "lexicon": lexicon},
        prompts={"system_prompt": system_prompt, "department_prompt": department_prompt},
        curation=curation.model_copy(update={"min_chars": min_chars, "max_chars": max(max_chars, min_chars)}),
    )
    command = invocation(["build-dialogue", *map(str, inputs), "--out", str(out)])
    report = run_build(DialogueBuilder(), cfg, command=command, progress=progress_bars, executor=common.executor())
    _files_table(report.manifest.stats.get("inputs", []))
    build_summary(f"build-dialogue {out}", report.manifest,
                  report.figures, started=t0)


def _files_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="per input file", show_header=True, header_style="bold")
    for name, justify in (("file", "left"), ("format", "left"), ("encoding", "left"), ("rows read", "right"),
                          ("kept", "right"), ("rejected by reason", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        rejected = ", ".join(f"{k} {v:,}" for k, v in r["rejected"].items()) or "-"
        table.add_row(r["file"], r["format"], r["encoding"], f"{r['rows_read']:,}", f"{r['records_kept']:,}", rejected)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("build-dialogue")(build_options(DialogueConfig)(curation_options(build_dialogue)))
