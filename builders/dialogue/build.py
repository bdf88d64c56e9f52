"""The dialogue builder (`medmill build-dialogue`): dialogue corpora -> cleaned multi-turn sft records;
run_build curates, splits (grouped by conversation) and writes them.

Per input file the summary and the card say: format detected, encoding, rows read, records kept,
rejected by reason. Generation (a map step cleaning rows, a global step merging prefix copies) puts
each file's row into `out.stats["inputs"]`; records kept and the
curation drops are only known after curation, so `finish` counts them in the records to be written
and the reject stream; `describe` puts the table into the card's summary (kept when the card is
re-rendered at push), the manifest has it under `stats.inputs`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from medmill.builders.core.builder import BuildContext, Builder, Inputs, ItemStream
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import BuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.steps import Step
from medmill.builders.dialogue import BUILDER, BUILDER_VERSION
from medmill.builders.dialogue.clean import Lexicon
from medmill.builders.dialogue.config import CleanConfig, PromptConfig, ReadConfig
from medmill.builders.dialogue.generate import CleanStep, MergeStep, input_rows
from medmill.builders.dialogue.stream import FirstPass, LanguageStep, MergeMapStep, first_pass
from medmill.builders.readers.batch_spill import BatchSpill
from medmill.builders.readers.dialogue import (
    DialogueFile,
    ReaderOptions,
    collect_dialogue_inputs,
    read_dialogue_file,
)
from medmill.schemas import RejectRow, SFTRecord

DESCRIPTION = (
    "Multi-turn doctor–patient conversations read from public dialogue corpora and cleaned: templated "
    "greetings and sign-offs, anonymisation tokens and stray whitespace removed, placeholder questions, "
    "empty turns and broken role orders repaired or rejected, prefix copies of one conversation merged "
    "into its longest form (a conversation sits in one split only), then deduplicated and checked for "
    "PII and safety. The answers are the corpora's own, as correct or wrong as they were."
)
# reject stages of the builder itself; other stages (curation, write) are named in the per-file table
OWN_STAGES = ("read", "clean", "merge")


class DialogueConfig(BuildConfig):
    limit: int | None = Field(None, ge=1, description="Use only the first N rows of the inputs (trial runs).")
    seed: int = Field(42, description="Seed of the splits.")
    val_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the validation split (grouped by conversation).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the test split (grouped by conversation).")
    read: ReadConfig = Field(default_factory=ReadConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)


class DialogueBuilder(Builder[DialogueConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = DialogueConfig

    def read(self, cfg: DialogueConfig, ctx: BuildContext) -> Inputs:
        """Every row of every input file as one item (`DialogueRow`); the files' descriptions in `extra`."""
        found = collect_dialogue_inputs(cfg.inputs, exclude=ctx.own_paths)
        options = ReaderOptions(answer_field=cfg.read.answer_field)
        files = [read_dialogue_file(path, name, cfg.read.format, options) for path, name, _ in found]
        if cfg.limit:
            left = cfg.limit
            for f in files:
                f.items, left = f.items[:left], max(0, left - len(f.items))
        described, rows = input_rows(files)
        return Inputs(rows, [path for path, _, _ in found], counters=Counter(input_files=len(files)),
                      extra={"files": described})

    def read_stream(self, cfg: DialogueConfig, ctx: BuildContext, work: Path, batch_items: int) -> ItemStream:
        """The first of two passes (builders/dialogue/stream.py): read and clean every row, spill the
        cleaned conversations, keep languages and prefix digests; the stream hands the conversations out."""
        found = collect_dialogue_inputs(cfg.inputs, exclude=ctx.own_paths)
        options = ReaderOptions(answer_field=cfg.read.answer_field)
        lexicon = Lexicon.load(cfg.clean.lexicon)
        spill = BatchSpill(work / "conversations.pickles", batch_items)
        with ctx.progress("reading and cleaning files", len(found)) as advance:

            def read(path: Path, name: str) -> DialogueFile:
                advance(1, "")
                return read_dialogue_file(path, name, cfg.read.format, options)

            fp = first_pass([(path, name) for path, name, _ in found], read, cfg.clean, lexicon, cfg.limit,
                            cfg.read.merge_prefixes, spill, batch_items)
        spill.close()
        inputs = Inputs([], [path for path, _, _ in found], fp.rejects, Counter(input_files=len(found)),
                        extra={"files": fp.files, "first_pass": fp})
        inputs.items_read = sum(f.rows_read for f in fp.files)
        return ItemStream(inputs, spill.batches, len(spill))

    def generation(self, cfg: DialogueConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> list[Step]:
        """Cleaning row by row (a map step), then language checks, prefix merging and records (a global
        step); the per-file table goes to `out.stats["inputs"]` (completed by `finish`)."""
        lexicon = Lexicon.load(cfg.clean.lexicon)
        out.prompt({"id": "dialogue_lexicon", "version": lexicon.version})
        files = inputs.extra["files"]
        fp: FirstPass | None = inputs.extra.get("first_pass")
        if fp is not None:  # streamed: cleaning ran in the first pass; the plan travels with the steps
            out.count("rows_read", sum(f.rows_read for f in files))
            for cleaning in fp.cleaning:
                out.counters.update(cleaning)
            out.count("prefix_copies_merged", int((fp.copy_of >= 0).sum()))
            return [LanguageStep(fp, [f.name for f in files]), MergeMapStep(fp, cfg.prompts)]
        return [CleanStep(cfg.clean, lexicon, [f.name for f in files]),
                MergeStep(files, cfg.clean, cfg.prompts, merge_prefixes=cfg.read.merge_prefixes)]

    def finish(self, cfg: DialogueConfig, inputs: Inputs, out: Collector) -> None:
        """Records kept and rejects by reason per input file, counted after curation."""
        out.stats["inputs"] = per_file_rows(out.stats.get("inputs", []), out.records, out.rejects)  # type: ignore[arg-type]

    def describe(self, cfg: DialogueConfig, inputs: Inputs, out: Collector) -> str:
        return DESCRIPTION + "\n\n" + per_file_markdown(out.stats.get("inputs", []))  # type: ignore[arg-type]

    def figures(self, cfg: DialogueConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c = manifest.counters
        return [("input files", len(out.stats.get("inputs", []))), ("rows read", c.get("rows_read", 0)),
                ("prefix copies merged", c.get("prefix_copies_merged", 0))]


def per_file_rows(reports: list[dict[str, Any]], records: Iterable[SFTRecord], rejects: Iterable[RejectRow]) -> list[dict[str, Any]]:
    """Each input file's row (`FileReport.as_dict`) with records kept (counted in the records to be
    written) and every reject of it by reason (the builder's own stages by reason, others as stage:reason)."""
    kept = Counter(r.source.file for r in records)
    rejected: dict[str | None, Counter] = {}
    for row in rejects:
        name = row.source.file if row.source is not None else None
        key = row.reason if row.stage in OWN_STAGES else f"{row.stage}:{row.reason}"
        rejected.setdefault(name, Counter())[key] += 1
    rows = []
    for report in reports:
        row = dict(report)
        row["records_kept"] = kept.get(report["file"], 0)
        row["rejected"] = dict(sorted(rejected.get(report["file"], Counter()).items()))
        rows.append(row)
    return rows


def per_file_markdown(rows: list[dict[str, Any]]) -> str:
    """The card's per-input-file table: format, encoding, rows read, records kept, rejected by reason."""
    lines = ["| input file | format | encoding | rows read | records kept | rejected (by reason) |",
             "|---|---|---|---:|---:|---|"]
    for r in rows:
        rejected = ", ".join(f"{k} {v:,}" for k, v in r["rejected"].items()) or "none"
        lines.append(f"| `{r['file']}` | {r['format']} | {r['encoding']} | {r['rows_read']:,} | "
                     f"{r['records_kept']:,} | {rejected} |")
    return "\n".join(lines)
