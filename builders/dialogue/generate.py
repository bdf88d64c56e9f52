"""Read conversations -> cleaned, merged sft records with per-input-file accounting.

Order: clean each conversation (clean.py), check its language against its file's, merge prefix copies
across all inputs (merge.py), then set the system prompt (the corpus's own, --system-prompt, or one per
department) and make the record. Everything dropped is a reject row counted against its input file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medmill.builders.dialogue import BUILDER, BUILDER_VERSION
from medmill.builders.dialogue.clean import Lexicon, Turn, clean_turns, language_of
from medmill.builders.dialogue.config import CleanConfig, PromptConfig
from medmill.builders.dialogue.merge import plan_prefix_merge
from medmill.builders.readers.dialogue import Dialogue, DialogueFile
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
class _Candidate:
    file: int
    item: Dialogue
    turns: list[Turn]


def build_dialogue_records(
    files: Sequence[DialogueFile],
    clean: CleanConfig,
    prompts: PromptConfig,
    *,
    merge_prefixes: bool = True,
    lexicon: Lexicon | None = None,
    on_row: Callable[[], None] | None = None,
) -> DialogueBuild:
    lex = lexicon or Lexicon.load(clean.lexicon)
    out = DialogueBuild()
    candidates: list[_Candidate] = []
    for fi, f in enumerate(files):
        report = FileReport(f.name, f.format, f.encoding, rows_read=f.rows_read)
        out.reports.append(report)
        mine: list[_Candidate] = []
        for row, item in enumerate(f.items, start=1):
            if on_row is not None:
                on_row()
            if not isinstance(item, Dialogue):
                _reject(out, report, "read", item.reason, item.message, f.name, item.line, item.raw)
                continue
            cleaned = clean_turns(item.turns, clean, lex)
            report.cleaning.update(cleaned.counts)
            if cleaned.reason is not None:
                _reject(out, report, "clean", cleaned.reason, cleaned.message, f.name, item.line, item.raw)
                continue
            item.meta["row"] = row  # n-th row of its file: tells apart the records of a one-line JSON array
            item.raw = None  # accepted: the raw row is not needed again (200k rows: hundreds of MiB)
            mine.append(_Candidate(fi, item, cleaned.turns))
        candidates += _check_language(mine, clean.language, report, out, f.name)
    # the plan's groups keep a conversation's copies in one split even when the copies are kept
    plan = plan_prefix_merge([c.turns for c in candidates])
    if not merge_prefixes:
        plan.copy_of = [None] * len(candidates)
    merged_into: Counter = Counter()
    for i, c in enumerate(candidates):
        holder = plan.copy_of[i]
        if holder is not None:
            h = candidates[holder]
            merged_into[holder] += 1
            f = files[c.file]
            _reject(out, out.reports[c.file], "merge", "prefix_copy",
                    f"the opening turns of the conversation at {files[h.file].name}:{h.item.line}, kept in its longest form",
                    f.name, c.item.line, _as_messages(c.turns))
    for i, c in enumerate(candidates):
        if plan.copy_of[i] is not None:
            continue
        f = files[c.file]
        record = _record(c, f, prompts, group=plan.group[i], copies=merged_into[i], counters=out.counters)
        out.records.append(record)
        out.reports[c.file].kept += 1
    out.counters["rows_read"] = sum(r.rows_read for r in out.reports)
    out.counters["prefix_copies_merged"] = plan.copies
    for r in out.reports:
        out.counters.update(r.cleaning)
    return out


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
    out.rejects.append(RejectRow(stage=stage, reason=reason, message=message,
                                 source=Source(file=name, line=line, builder=BUILDER, builder_version=BUILDER_VERSION),
                                 raw=raw))


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


def _record(c: _Candidate, f: DialogueFile, prompts: PromptConfig, *, group: str, copies: int, counters: Counter) -> SFTRecord:
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
