"""build-dialogue streamed, in two passes (what `CleanStep` + `MergeStep` do in memory, the same records
and rejects in the same order):

1. `first_pass`: every file is read (one at a time, as the reader reads it), its rows cleaned in
   batches (`CleanStep`: read and clean rejects, in row order); each cleaned conversation is spilled to
   disk, and only compact facts stay: its file, line, language and prefix digests. From them: each
   file's language (majority), which conversations are strays, the prefix-merge plan.
2. The spilled conversations stream through two generation map steps holding that plan:
   `LanguageStep` (wrong-language rejects) and `MergeMapStep` (prefix-copy rejects, records). Their
   rejects come after every earlier one (`whole_input_order`), as `MergeStep`'s do in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.dialogue.clean import Lexicon, language_of
from medmill.builders.dialogue.config import CleanConfig, PromptConfig
from medmill.builders.dialogue.generate import (
    AUTO_LANGUAGE_MAJORITY,
    CleanStep,
    DialogueRow,
    FileReport,
    InputFile,
    _as_messages,
    _Candidate,
    _record,
    _reject_row,
)
from medmill.builders.dialogue.merge import group_key, plan_from_digests, prefix_digests
from medmill.builders.readers.batch_spill import BatchSpill
from medmill.builders.readers.dialogue import DialogueFile
from medmill.schemas import RejectRow


@dataclass
class FirstPass:
    """What the first pass keeps: per file its description, cleaning counts and language; per cleaned
    conversation (in order) its position among those kept after the language check (-1: a stray)."""

    files: list[InputFile] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)  # read and clean rejects, in row order
    cleaning: list[Counter] = field(default_factory=list)
    languages: list[str | None] = field(default_factory=list)
    strays: list[Counter] = field(default_factory=list)  # wrong-language conversations per file
    kept_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    copy_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per kept: holder or -1
    merged_into: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    file_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # per kept conversation
    line_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    conversations: int = 0


def first_pass(
    files: Sequence[tuple[Path, str]],
    read: Any,  # (path, name) -> DialogueFile
    clean: CleanConfig,
    lexicon: Lexicon,
    limit: int | None,
    merge_prefixes: bool,
    spill: BatchSpill,
    batch_items: int,
) -> FirstPass:
    """Read, clean and spill every conversation; decide languages and the merge plan (module docstring)."""
    fp = FirstPass()
    step = CleanStep(clean, lexicon, [name for _, name in files])
    langs: list[str] = []
    file_of: list[int] = []
    line_of: list[int] = []
    digests: list[list[str]] = []
    left = limit
    for fi, (path, name) in enumerate(files):
        f: DialogueFile = read(path, name)
        if limit:
            f.items, left = f.items[:left], max(0, left - len(f.items))  # type: ignore[operator]
        fp.files.append(InputFile(f.name, f.format, f.encoding, f.rows_read))
        fp.cleaning.append(Counter())
        rows = [DialogueRow(fi, row, item) for row, item in enumerate(f.items, start=1)]
        del f
        for start in range(0, len(rows), batch_items):
            result = step(rows[start : start + batch_items])
            fp.rejects.extend(result.rejects)
            for c in result.records:
                fp.cleaning[c.file].update(c.cleaning)
                if c.turns is None:
                    continue
                langs.append(language_of(c.turns) if clean.language != "any" else "")
                file_of.append(c.file)
                line_of.append(c.item.line)
                digests.append(prefix_digests(c.turns))
                spill.add((len(langs) - 1, c))
        del rows
    fp.conversations = len(langs)
    keep = np.ones(len(langs), dtype=bool)
    by_file: list[list[int]] = [[] for _ in files]
    for i, f in enumerate(file_of):
        by_file[f].append(i)
    for fi, mine in enumerate(by_file):
        fp.strays.append(Counter())
        fp.languages.append(_file_language(clean.language, [langs[i] for i in mine]))
        expected = fp.languages[fi]
        if expected in (None, "mixed"):
            continue
        for i in mine:
            if langs[i] != expected:
                keep[i] = False
                fp.strays[fi]["wrong_language"] += 1
    kept = np.flatnonzero(keep)
    fp.kept_index = np.where(keep, np.cumsum(keep) - 1, -1)
    plan = plan_from_digests([digests[i] for i in kept.tolist()])
    del digests
    copy_of = [-1 if c is None else c for c in plan.copy_of] if merge_prefixes else [-1] * len(kept)
    fp.copy_of = np.asarray(copy_of, dtype=np.int64)
    holders = fp.copy_of[fp.copy_of >= 0]
    fp.merged_into = np.bincount(holders, minlength=len(kept)) if len(kept) else np.zeros(0, np.int64)
    fp.file_of = np.asarray(file_of, dtype=np.int32)[kept]
    fp.line_of = np.asarray(line_of, dtype=np.int64)[kept]
    return fp


def _file_language(expected: str, langs: list[str]) -> str | None:
    """A file's language as `generate._check_language` decides it (None: not checked)."""
    if expected == "any" or not langs:
        return None
    if expected == "auto":
        expected, n = Counter(langs).most_common(1)[0]
        if n < AUTO_LANGUAGE_MAJORITY * len(langs):
            return "mixed"
    return expected


class LanguageStep(MapStep):
    """Rejects the conversations of a file that are not in its language; passes the others on with
    their position among the kept (what the merge plan indexes)."""

    name = "generate_language"
    whole_input_order = True  # in memory these rejects follow every cleaning reject

    def __init__(self, fp: FirstPass, names: list[str]) -> None:
        self.kept_index, self.languages, self.names = fp.kept_index, fp.languages, names

    def __call__(self, batch: list[tuple[int, _Candidate]]) -> StepResult:
        kept, rejects = [], []
        for at, c in batch:
            i = int(self.kept_index[at])
            if i >= 0:
                kept.append((i, c))
                continue
            expected = self.languages[c.file]
            rejects.append(_reject_row("clean", "wrong_language", f"reads as {language_of(c.turns)}, the file is {expected}",  # type: ignore[arg-type]
                                       self.names[c.file], c.item.line, _as_messages(c.turns)))  # type: ignore[arg-type]
        return StepResult(kept, rejects)


class MergeMapStep(MapStep):
    """Prefix copies rejected (naming the conversation kept), records made, by the first pass's plan."""

    name = "generate_merge"
    whole_input_order = True

    def __init__(self, fp: FirstPass, prompts: PromptConfig) -> None:
        self.fp, self.prompts = fp, prompts

    def __call__(self, batch: list[tuple[int, _Candidate]]) -> StepResult:
        fp, files = self.fp, self.fp.files
        rejects: list[RejectRow] = []
        records = []
        counters: Counter = Counter()
        kept_by_file: Counter = Counter()
        for i, c in batch:
            holder = int(fp.copy_of[i])
            if holder >= 0:
                rejects.append(_reject_row(
                    "merge", "prefix_copy",
                    f"the opening turns of the conversation at {files[int(fp.file_of[holder])].name}:{int(fp.line_of[holder])}, kept in its longest form",
                    files[c.file].name, c.item.line, _as_messages(c.turns)))  # type: ignore[arg-type]
        for i, c in batch:
            if fp.copy_of[i] >= 0:
                continue
            group = group_key(prefix_digests(c.turns), i)  # type: ignore[arg-type]
            records.append(_record(c, files[c.file], self.prompts, group=group, copies=int(fp.merged_into[i]), counters=counters))
            kept_by_file[c.file] += 1
        copies = Counter(c.file for i, c in batch if fp.copy_of[i] >= 0)
        return StepResult(records, rejects, counters, {"kept": kept_by_file, "copies": copies})

    def fold_stats(self, acc: dict[str, Counter] | None, part: dict[str, Counter]) -> dict[str, Counter]:
        acc = acc if acc is not None else {"kept": Counter(), "copies": Counter()}
        acc["kept"].update(part["kept"])
        acc["copies"].update(part["copies"])
        return acc

    def final_stats(self, acc: dict[str, Counter] | None) -> dict[str, Any]:
        """The per-file table `MergeStep` reports (`finish` then recounts kept records and rejects)."""
        acc = acc or {"kept": Counter(), "copies": Counter()}
        reports = []
        for fi, f in enumerate(self.fp.files):
            report = FileReport(f.name, f.format, f.encoding, rows_read=f.rows_read, kept=acc["kept"][fi],
                                cleaning=self.fp.cleaning[fi], language=self.fp.languages[fi])
            report.rejected.update(self.fp.strays[fi])
            if acc["copies"][fi]:
                report.rejected["prefix_copy"] += acc["copies"][fi]
            reports.append(report.as_dict())
        return {"inputs": reports}
