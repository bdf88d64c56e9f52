"""Seed tasks for build-self-instruct, from the files users have.

- MedicalGPT-zh `dialogue_seed_task.json`: `instruction` is a category label (病因分析), `input` the
  patient's words, `output` the doctor's answer; 5 of 90 records also carry `original`.
- Alpaca / BELLE files: `instruction` is the question itself, `input` optional context.
- JSON Lines (or a JSON array) of instructions: objects with `instruction` / `question` / `prompt`,
  or bare strings.
Formats are sniffed from content; a record that is none of these is a reject naming file and line.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.builders.readers.textio import iter_json_items, read_text
from medmill.schemas import RejectRow, Source
from medmill.schemas.errors import MedmillError

_NO_INPUT = {"", "<无输入>", "无输入", "<noinput>", "无"}
_QUESTION_KEYS = ("instruction", "question", "prompt", "query")
_ANSWER_KEYS = ("output", "answer", "response")
# a category label is a short phrase without sentence punctuation (病因分析, 给出营养建议)
_LABEL = re.compile(r"[^\s，,。？?！!：:；;、]{2,12}")


@dataclass(frozen=True)
class SeedTask:
    question: str
    answer: str = ""
    category: str | None = None
    file: str = ""
    line: int | None = None


@dataclass
class SeedRead:
    seeds: list[SeedTask] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    files: list[Path] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def seed_from_value(value: Any, file: str, line: int | None) -> SeedTask | str:
    """A SeedTask, or the reason the value is not one."""
    if isinstance(value, str):
        return SeedTask(question=value.strip(), file=file, line=line) if value.strip() else "empty_seed"
    if not isinstance(value, dict):
        return "not_a_seed"
    instruction = next((_text(value[k]) for k in _QUESTION_KEYS if _text(value.get(k))), "")
    given = _text(value.get("input"))
    context = "" if given in _NO_INPUT else given
    answer = next((_text(value[k]) for k in _ANSWER_KEYS if _text(value.get(k))), "")
    category = _text(value.get("category")) or None
    if instruction and context and category is None and _LABEL.fullmatch(instruction):
        # MedicalGPT-zh: the instruction is the task's category, the input is what the patient says
        return SeedTask(question=context, answer=answer, category=instruction, file=file, line=line)
    question = f"{instruction}\n{context}" if instruction and context else instruction or context
    if not question:
        return "no_instruction"
    return SeedTask(question=question, answer=answer, category=category, file=file, line=line)


def read_seeds(paths: list[Path]) -> SeedRead:
    """Every seed task in `paths`; raises MedmillError when none is usable."""
    out = SeedRead()
    for path in paths:
        path = Path(path)
        decoded = read_text(path)
        out.files.append(path)
        out.counters[f"encodings.{decoded.encoding}"] += 1
        try:
            items = list(iter_json_items(decoded))
        except MedmillError:
            # plain text: one instruction per non-empty line
            items = None
        if items is None:
            for i, line in enumerate(decoded.text.split("\n"), start=1):
                if line.strip():
                    out.seeds.append(SeedTask(question=line.strip(), file=str(path), line=i))
            out.counters["seed_files.text_lines"] += 1
            continue
        out.counters["seed_files.json"] += 1
        for item in items:
            reason: str
            if item.error:
                reason, message, raw = "invalid_json", item.error, item.raw
            else:
                got = seed_from_value(item.value, str(path), item.line)
                if isinstance(got, SeedTask):
                    out.seeds.append(got)
                    continue
                reason, message, raw = got, f"{path}:{item.line}: not a seed task ({got})", item.value
            out.counters[f"rejected_seeds.{reason}"] += 1
            out.rejects.append(RejectRow(stage="read", reason=reason, message=message,
                                         source=Source(file=str(path), line=item.line, builder="self_instruct"),
                                         raw=raw))
    if not out.seeds:
        raise MedmillError(f"no seed tasks in {', '.join(map(str, paths))} "
                           f"({len(out.rejects)} record(s) rejected; see the formats in --help)")
    out.counters["seeds"] = len(out.seeds)
    out.counters["seeds_with_category"] = sum(1 for s in out.seeds if s.category)
    return out
