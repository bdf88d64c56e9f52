"""The dialogue builder (`medmill build-dialogue`): dialogue corpora -> cleaned multi-turn sft records;
run_build curates, splits (grouped by conversation) and writes them.

Per input file the summary and the card say: format detected, encoding, rows read, records kept,
rejected by reason. Records kept are only known after curation, so the card hook (`render_card`)
counts them in the finished dir (shards + rejects.jsonl) before the card is written, and puts the
table into the card's summary (kept when the card is re-rendered at push) and the manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import Field

from medmill.builders.core.builder import BuildContext, Builder, Inputs
from medmill.builders.core.collect import Collector
from medmill.builders.core.config import BuildConfig
from medmill.builders.core.manifest import Manifest
from medmill.builders.dialogue import BUILDER, BUILDER_VERSION
from medmill.builders.dialogue.clean import Lexicon
from medmill.builders.dialogue.config import CleanConfig, PromptConfig, ReadConfig
from medmill.builders.dialogue.generate import FileReport, build_dialogue_records
from medmill.builders.readers.dialogue import ReaderOptions, collect_dialogue_inputs, read_dialogue_file

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
    read: ReadConfig = Field(default_factory=ReadConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)


class DialogueBuilder(Builder[DialogueConfig]):
    name = BUILDER
    version = BUILDER_VERSION
    kind = "sft"
    config = DialogueConfig
    description = DESCRIPTION

    def __init__(self) -> None:
        self.reports: list[FileReport] = []
        self.per_file: list[dict[str, Any]] = []

    def read(self, cfg: DialogueConfig, ctx: BuildContext) -> Inputs:
        found = collect_dialogue_inputs(cfg.inputs, exclude=ctx.own_paths)
        options = ReaderOptions(answer_field=cfg.read.answer_field)
        files = [read_dialogue_file(path, name, cfg.read.format, options) for path, name, _ in found]
        if cfg.limit:
            left = cfg.limit
            for f in files:
                f.items, left = f.items[:left], max(0, left - len(f.items))
        return Inputs(files, [path for path, _, _ in found], counters=Counter(input_files=len(files)))

    def generate(self, cfg: DialogueConfig, inputs: Inputs, ctx: BuildContext, out: Collector) -> None:
        lexicon = Lexicon.load(cfg.clean.lexicon)
        total = sum(f.rows_read for f in inputs.items)
        with ctx.progress("cleaning", total) as advance:
            built = build_dialogue_records(
                inputs.items, cfg.clean, cfg.prompts, merge_prefixes=cfg.read.merge_prefixes, lexicon=lexicon,
                on_row=lambda: advance(1, ""),
            )
        inputs.items.clear()  # the rows are records or rejects now; free them before curation
        for record in built.records:
            out.add(record)
        out.rejects.extend(built.rejects)
        out.counters.update(built.counters)
        out.prompt({"id": "dialogue_lexicon", "version": lexicon.version})
        self.reports = built.reports

    def figures(self, cfg: DialogueConfig, inputs: Inputs, out: Collector, manifest: Manifest) -> list[tuple[str, Any]]:
        c = manifest.counters
        return [("input files", len(self.reports)), ("rows read", c.get("rows_read", 0)),
                ("prefix copies merged", c.get("prefix_copies_merged", 0))]

    def render_card(self, manifest: Manifest, out_dir: Path, description: str) -> str:
        """Card hook: the per-file table from the finished dir, into the manifest and the card summary."""
        from medmill.builders.publish.card import render_card

        self.per_file = per_file_rows(self.reports, Path(out_dir))
        manifest.curation["inputs"] = self.per_file
        return render_card(manifest, out_dir, description + "\n\n" + per_file_markdown(self.per_file))


def per_file_rows(reports: list[FileReport], out_dir: Path) -> list[dict[str, Any]]:
    """Each input file's report with records kept (counted in the shards) and every reject of it by reason."""
    kept: Counter = Counter()
    for shard in sorted((out_dir / "data").glob("*.parquet")):
        for src in pq.read_table(shard, columns=["source"]).column("source").to_pylist():
            kept[(src or {}).get("file")] += 1
    rejected: dict[str, Counter] = {}
    rejects = out_dir / "rejects.jsonl"
    if rejects.exists():
        with open(rejects, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                name = (row.get("source") or {}).get("file")
                key = row["reason"] if row["stage"] in OWN_STAGES else f"{row['stage']}:{row['reason']}"
                rejected.setdefault(name, Counter())[key] += 1
    rows = []
    for rep in reports:
        row = rep.as_dict()
        row["records_kept"] = kept.get(rep.name, 0)
        row["rejected"] = dict(sorted(rejected.get(rep.name, Counter()).items()))
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
