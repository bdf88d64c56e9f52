"""One dialogue build end to end: read every input, clean, merge prefix copies, curate, write.

`DialogueBuildConfig` is what the command fills (and the manifest's `params`); `run_dialogue` is what
`medmill build-dialogue` runs. Curation runs here (not inside the writer's tail) so the records each
input file keeps after curation can be told apart for the per-file table of the summary and the card.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.pipeline import LocalExecutor
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import curation_steps
from medmill.builders.dialogue.clean import Lexicon
from medmill.builders.dialogue.config import CleanConfig, PromptConfig, ReadConfig
from medmill.builders.dialogue.generate import BUILDER, FileReport, build_dialogue_records
from medmill.builders.readers.dialogue import ReaderOptions, collect_dialogue_inputs, read_dialogue_file

DESCRIPTION = (
    "Multi-turn doctor–patient conversations read from public dialogue corpora and cleaned: templated "
    "greetings and sign-offs, anonymisation tokens and stray whitespace removed, placeholder questions, "
    "empty turns and broken role orders repaired or rejected, prefix copies of one conversation merged "
    "into its longest form (so a conversation sits in one split only), then deduplicated and checked for "
    "PII and safety. The answers are the corpora's own, as correct or wrong as they were."
)


class DialogueBuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Path] = Field(min_length=1)
    out: Path
    read: ReadConfig = Field(default_factory=ReadConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    seed: int = 42
    val_size: float = Field(0.0, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    curation: CurationSettings = Field(default_factory=CurationSettings)


Progress = Callable[[int], AbstractContextManager[Callable[[], None]]]


def run_dialogue(cfg: DialogueBuildConfig, *, command: str, progress: Progress | None = None
                 ) -> tuple[Manifest, dict[str, Any], list[dict[str, Any]]]:
    """Build `cfg.out`; returns the manifest, figures for the summary and one row per input file."""
    t0 = time.perf_counter()
    lexicon = Lexicon.load(cfg.clean.lexicon)
    inputs = collect_dialogue_inputs(cfg.inputs, exclude=[cfg.out])
    options = ReaderOptions(answer_field=cfg.read.answer_field)
    files = [read_dialogue_file(path, name, cfg.read.format, options) for path, name, _ in inputs]
    t1 = time.perf_counter()
    bar = progress(sum(f.rows_read for f in files)) if progress else nullcontext(None)
    with bar as tick:
        built = build_dialogue_records(files, cfg.clean, cfg.prompts, merge_prefixes=cfg.read.merge_prefixes,
                                       lexicon=lexicon, on_row=tick)
    del files
    t2 = time.perf_counter()
    curated = LocalExecutor().run(built.records, curation_steps("sft", cfg.curation))
    per_file = _per_file(built.reports, curated.records, curated.rejects)
    info = BuildInfo(
        kind="sft",
        builder=BUILDER,
        command=command,
        params=cfg.model_dump(mode="json", exclude={"out"}),
        inputs=[path for path, _, _ in inputs],
        seed=cfg.seed,
        val_size=cfg.val_size,
        test_size=cfg.test_size,
        license=cfg.license,
        source_licenses=cfg.source_licenses,
        counters=built.counters + curated.counters,
        curation={**curated.stats, "inputs": per_file},
        prompts=[{"id": "dialogue_lexicon", "version": lexicon.version}],
        timings={"read": t1 - t0, "generate": t2 - t1, **{f"curate.{k}": v for k, v in curated.timings.items()},
                 "curation": time.perf_counter() - t2},
        description=DESCRIPTION + "\n\n" + per_file_markdown(per_file),
    )
    manifest = finish_build(cfg.out, curated.records, built.rejects + curated.rejects, info, started=t0)
    for commit in curated.on_commit:
        commit()
    figures = {
        "input files": len(per_file),
        "rows read": built.counters["rows_read"],
        "records after cleaning": len(built.records),
        "prefix copies merged": built.counters["prefix_copies_merged"],
    }
    return manifest, figures, per_file


def _per_file(reports: list[FileReport], records: list, curation_rejects: list) -> list[dict[str, Any]]:
    """Each file's report with `records_kept` after curation and curation drops among its rejects."""
    kept = Counter(r.source.file for r in records)
    dropped: dict[str, Counter] = {}
    for rej in curation_rejects:
        name = rej.source.file if rej.source else None
        dropped.setdefault(name or "", Counter())[f"{rej.stage}:{rej.reason}"] += 1
    rows = []
    for rep in reports:
        row = rep.as_dict()
        row["records_kept"] = kept.get(rep.name, 0)
        row["rejected"] = {**row["rejected"], **dict(sorted(dropped.get(rep.name, Counter()).items()))}
        rows.append(row)
    return rows


def per_file_markdown(rows: list[dict[str, Any]]) -> str:
    """The per-input-file table of the card: format, encoding, rows read, kept, rejected by reason."""
    lines = ["| input file | format | encoding | rows read | records kept | rejected (by reason) |",
             "|---|---|---|---:|---:|---|"]
    for r in rows:
        rejected = ", ".join(f"{k} {v:,}" for k, v in r["rejected"].items()) or "none"
        lines.append(f"| `{r['file']}` | {r['format']} | {r['encoding']} | {r['rows_read']:,} | "
                     f"{r['records_kept']:,} | {rejected} |")
    return "\n".join(lines)
