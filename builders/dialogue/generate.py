"""Read conversations -> cleaned, merged sft records with per-input-file accounting.

Order: clean each conversation (clean.py; `CleanStep`, a map step over rows), check its language against
its file's, merge prefix copies across all inputs (merge.py), then set the system prompt (the corpus's own,
--system-prompt, or one per department) and make the record (`MergeStep`, a global step: it needs every
conversation). Everything dropped is a reject row counted against its input file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medmill.builders.core.steps import GlobalStep, MapStep, StepResult
from medmill.builders.dialogue import BUILDER, BUILDER_VERSION
from medmill.builders.dialogue.clean import Lexicon, Turn, clean_turns, language_of
from medmill.builders.dialogue.config import CleanConfig, PromptConfig
from medmill.builders.dialogue.merge import plan_prefix_merge
from medmill.builders.readers.dialogue import Dialogue, DialogueFile, RowProblem
from medmill.schemas import Message, RejectRow, SFTRecord, Source

# --language auto: a file whose records are at least this share one language rejects the others as strays
AUTO_LANGUAGE_MAJORITY = 0.9


@dataclass
class FileReport:
    """What happened to one input file: the summary table's and the card's row."""

    name: str
    format: str
    encoding: str
    rows_read: int = 0
    kept: int = 0  # after cleaning and merging; the build lowers it by what curation drops
    rejected: Counter = field(default_factory=Counter)
    cleaning: Counter = field(default_factory=Counter)
    language: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name, "format": self.format, "encoding": self.encoding, "language": self.language,
            "rows_read": self.rows_read, "records_kept": self.kept,
            "rejected": dict(sorted(self.rejected.items())), "cleaning": dict(sorted(self.cleaning.items())),
        }


@dataclass
class DialogueBuild:
    records: list[SFTRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    reports: list[FileReport] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)


@dataclass
class InputFile:
    """What generation needs to know of an input file besides its rows (plain data)."""

    name: str
    format: str
    encoding: str
    rows_read: int


@dataclass
class DialogueRow:
    """The builder's input item: the `row`-th row (1-based) of input file `file`, as read."""

    file: int
    row: int
    item: Dialogue | RowProblem


@dataclass
class _Candidate:
    file: int
    item: Dialogue
    turns: list[Turn] | None  # None: the row was rejected in cleaning (its cleaning counts still count)
    cleaning: Counter


def input_rows(files: Sequence[DialogueFile]) -> tuple[list[InputFile], list[DialogueRow]]:
    """The files' descriptions and all their rows, file after file (what the generation steps take)."""
    described = [InputFile(f.name, f.format, f.encoding, f.rows_read) for f in files]
    rows = [DialogueRow(fi, row, item) for fi, f in enumerate(files) for row, item in enumerate(f.items, start=1)]
    return described, rows


def build_dialogue_records(
    files: Sequence[DialogueFile],
    clean: CleanConfig,
    prompts: PromptConfig,
    *,
    merge_prefixes: bool = True,
    lexicon: Lexicon | None = None,
) -> DialogueBuild:
    """Cleaned, merged records of `files` in one call (what the build runs as `CleanStep` over batches
    of rows, then `MergeStep`), with each file's report counting its records and rejects."""
    described, rows = input_rows(files)
    cleaned = CleanStep(clean, lexicon or Lexicon.load(clean.lexicon), [f.name for f in described])(rows)
    merged = MergeStep(described, clean, prompts, merge_prefixes)(cleaned.records)
    out = DialogueBuild(merged.records, cleaned.rejects + merged.rejects, counters=merged.counters)
    for d in merged.stats["inputs"]:
        rejected = Counter(r.reason for r in out.rejects if r.source is not None and r.source.file == d["file"])
        out.reports.append(FileReport(d["file"], d["format"], d["encoding"], d["rows_read"], d["records_kept"],
                                      rejected, Counter(d["cleaning"]), d["language"]))
    return out


class CleanStep(MapStep):
    """Generation, row by row: a row the reader could not parse or that cleaning rejects is a reject
    row; the others pass on cleaned (as candidates) to `MergeStep`. Holds the settings and the lexicon."""

    name = "generate"

    def __init__(self, clean: CleanConfig, lexicon: Lexicon, names: list[str]) -> None:
        self.clean = clean
        self.lexicon = lexicon
        self.names = names

    def __call__(self, batch: list[DialogueRow]) -> StepResult:
        rejects: list[RejectRow] = []
        kept: list[_Candidate] = []
        for r in batch:
            name, item = self.names[r.file], r.item
            if not isinstance(item, Dialogue):
                rejects.append(_reject_row("read", item.reason, item.message, name, item.line, item.raw))
                continue
            cleaned = clean_turns(item.turns, self.clean, self.lexicon)
            if cleaned.reason is not None:
                rejects.append(_reject_row("clean", cleaned.reason, cleaned.message, name, item.line, item.raw))
                kept.append(_Candidate(r.file, item, None, Counter(cleaned.counts)))
                continue
            item.meta["row"] = r.row  # n-th row of its file: tells apart the records of a one-line JSON array
            item.raw = None  # accepted: the raw row is not needed again (200k rows: hundreds of MiB)
            kept.append(_Candidate(r.file, item, cleaned.turns, Counter(cleaned.counts)))
        return StepResult(kept, rejects)


class MergeStep(GlobalStep):
    """Generation over every cleaned conversation: each file's language check, prefix copies merged
    across all inputs, system prompts, records. Its stats are the per-file reports (`inputs`)."""

    name = "generate_merge"

    def __init__(self, files: list[InputFile], clean: CleanConfig, prompts: PromptConfig, merge_prefixes: bool = True) -> None:
        self.files = files
        self.clean = clean
        self.prompts = prompts
        self.merge_prefixes = merge_prefixes

    def __call__(self, batch: list[_Candidate]) -> StepResult:
        out = DialogueBuild()
        out.reports = [FileReport(f.name, f.format, f.encoding, rows_read=f.rows_read) for f in self.files]
        per_file: list[list[_Candidate]] = [[] for _ in self.files]
        for c in batch:
            out.reports[c.file].cleaning.update(c.cleaning)
            if c.turns is not None:
                per_file[c.file].append(c)
        candidates: list[_Candidate] = []
        for fi, mine in enumerate(per_file):
            candidates += _check_language(mine, self.clean.language, out.reports[fi], out, self.files[fi].name)
        self._merge(candidates, out)
        out.counters["rows_read"] = sum(r.rows_read for r in out.reports)
        for r in out.reports:
            out.counters.update(r.cleaning)
        return StepResult(out.records, out.rejects, out.counters, stats={"inputs": [r.as_dict() for r in out.reports]})

    def _merge(self, candidates: list[_Candidate], out: DialogueBuild) -> None:
        # the plan's groups keep a conversation's copies in one split even when the copies are kept
        plan = plan_prefix_merge([c.turns for c in candidates])  # type: ignore[misc]
        if not self.merge_prefixes:
            plan.copy_of = [None] * len(candidates)
        merged_into: Counter = Counter()
        for i, c in enumerate(candidates):
            holder = plan.copy_of[i]
            if holder is not None:
                h = candidates[holder]
                merged_into[holder] += 1
                _reject(out, out.reports[c.file], "merge", "prefix_copy",
                        f"the opening turns of the conversation at {self.files[h.file].name}:{h.item.line}, kept in its longest form",
                        self.files[c.file].name, c.item.line, _as_messages(c.turns))  # type: ignore[arg-type]
        for i, c in enumerate(candidates):
            if plan.copy_of[i] is not None:
                continue
            f = self.files[c.file]
            record = _record(c, f, self.prompts, group=plan.group[i], copies=merged_into[i], counters=out.counters)
            out.records.append(record)
            out.reports[c.file].kept += 1
        out.counters["prefix_copies_merged"] = plan.copies


def _check_language(mine: list[_Candidate], expected: str, report: FileReport, out: DialogueBuild, name: str) -> list[_Candidate]:
    if expected == "any" or not mine:
        return mine
    langs = [language_of(c.turns) for c in mine]
    if expected == "auto":
        expected, n = Counter(langs).most_common(1)[0]
        if n < AUTO_LANGUAGE_MAJORITY * len(langs):
            report.language = "mixed"  # a bilingual file: no language is the odd one out
            return mine
    report.language = expected
    kept = []
    for c, lang in zip(mine, langs, strict=True):
        if lang == expected:
            kept.append(c)
        else:
            _reject(out, report, "clean", "wrong_language", f"reads as {lang}, the file is {expected}", name, c.item.line, _as_messages(c.turns))
    return kept


def _as_messages(turns: list[Turn]) -> list[dict[str, str]]:
    return [{"role": r, "content": t} for r, t in turns]


def _reject(out: DialogueBuild, report: FileReport, stage: str, reason: str, message: str, name: str, line: int, raw: Any) -> None:
    report.rejected[reason] += 1
    out.rejects.append(_reject_row(stage, reason, message, name, line, raw))


def _reject_row(stage: str, reason: str, message: str, name: str, line: int, raw: Any) -> RejectRow:
    return RejectRow(stage=stage, reason=reason, message=message,
                     source=Source(file=name, line=line, builder=BUILDER, builder_version=BUILDER_VERSION), raw=raw)


def _system_prompt(c: _Candidate, prompts: PromptConfig, counters: Counter) -> str | None:
    own = c.turns[0][1] if c.turns[0][0] == "system" else None
    if prompts.system_prompt is not None:
        return prompts.system_prompt
    if prompts.department_prompt:
        department = str(c.item.meta.get("department") or "").strip()
        if department:
            counters["department_prompts"] += 1
            return prompts.department_template.format(department=department)
        counters["no_department_for_prompt"] += 1
    return own


def _record(c: _Candidate, f: InputFile, prompts: PromptConfig, *, group: str, copies: int, counters: Counter) -> SFTRecord:
    system = _system_prompt(c, prompts, counters)
    body = [t for t in c.turns if t[0] != "system"]
    messages = ([Message(role="system", content=system)] if system else []) + [
        Message(role=role, content=text) for role, text in body  # type: ignore[arg-type]
    ]
    meta: dict[str, Any] = {"format": f.format, "turns": len(body) // 2}
    for key in ("row", "department", "title", "conversation_id", "answer_field", "side", "origin_builder"):
        if c.item.meta.get(key) not in (None, ""):
            meta[key] = c.item.meta[key]
    if copies:
        meta["prefix_copies_merged"] = copies
    return SFTRecord(
        id=SFTRecord.make_id(messages),
        messages=messages,
        source=Source(file=f.name, line=c.item.line, ref=str(c.item.meta.get("conversation_id") or "") or None,
                      group=group, builder=BUILDER, builder_version=BUILDER_VERSION),
        meta=meta,
    )
