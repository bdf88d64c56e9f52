"""Multiple-choice items from build-tasks mcq dirs and from the public exam files.

Shapes read (column names sniffed, any of them overridable with `--column KEY=NAME`):
- CMExam CSV: `Question`, `Options` as "A xxx\\nB yyy" lines, `Answer` ("A" or "AC");
- MedQA (MCMLE) JSON Lines: `question`, `options` {A..E}, `answer_idx` (letter; `answer` is the text);
- CMB JSON: `question`, `option` {A..}, `answer` ("C" / "ABD"), `exam_type`, `question_type`;
- TCMChat CSV: `question`, one column per letter `A`..`E`, `answer`;
- mcq dataset dirs (build-tasks): messages [system?, user (stem + option lines), assistant] and meta
  {task: "mcq", question, options {letter: text}, answer, category}; the eval split is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmill.evaluation.cache import fingerprint
from medmill.evaluation.sources import Problems, dir_rows, file_rows, is_dir_source
from medmill.schemas.errors import MedmillError

LETTERS = "ABCDEFGHIJ"
QUESTION_KEYS = ("question", "Question", "stem", "题干", "问题")
OPTIONS_KEYS = ("options", "Options", "option", "choices", "选项")
ANSWER_KEYS = ("answer_idx", "answer", "Answer", "label", "答案")
CATEGORY_KEYS = ("category", "exam_subject", "exam_class", "Clinical Department", "Medical Discipline", "meta_info", "domain", "chapter")
TYPE_KEYS = ("question_type", "type", "题型")
_OPTION_LINE = re.compile(r"^\s*([A-J])\s*[\.．、:：)）]?\s*(.*)$")


@dataclass
class MCQItem:
    key: str
    origin: str  # file:line or dir:split:id
    question: str
    options: dict[str, str]
    answer: str  # sorted letters: "B", "AC"
    category: str = ""
    multi: bool = False
    prompt: str = ""  # the user turn shown to the model
    system: str | None = None


def option_lines(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def default_prompt(question: str, options: dict[str, str], multi: bool) -> str:
    kind = "多项选择题（可能有多个正确答案）" if multi else "单项选择题"
    return f"以下是一道{kind}，请选出正确答案。\n{question}\n{option_lines(options)}"


def parse_options(value: Any) -> dict[str, str]:
    """{letter: text} from a mapping, a list, or "A xxx\\nB yyy" lines."""
    if isinstance(value, dict):
        out = {str(k).strip().upper(): str(v).strip() for k, v in value.items() if v is not None and str(v).strip()}
    elif isinstance(value, list):
        out = {LETTERS[i]: str(v).strip() for i, v in enumerate(value[: len(LETTERS)])}
    elif isinstance(value, str):
        out = {}
        last = None
        for line in value.replace("\r\n", "\n").split("\n"):
            m = _OPTION_LINE.match(line)
            if m and (m.group(1) not in out) and (last is None or ord(m.group(1)) == ord(last) + 1 or not out):
                last = m.group(1)
                out[last] = m.group(2).strip()
            elif last is not None and line.strip():
                out[last] += "\n" + line.strip()  # a wrapped option continues
    else:
        return {}
    if not out or any(k not in LETTERS for k in out):
        return {}
    return dict(sorted(out.items()))


def parse_answer(value: Any, options: dict[str, str]) -> str:
    """Sorted answer letters, or "" when the value names no option. An option's text maps to its letter."""
    if isinstance(value, int) and 0 <= value < len(options):
        return list(options)[value]
    if not isinstance(value, str) or not value.strip():
        return ""
    text = value.strip()
    for letter, option in options.items():
        if text == option:
            return letter
    letters = re.sub(r"[\s,，、;；和及与/|]+", "", text.upper())
    if letters and all(c in options for c in letters) and len(set(letters)) == len(letters):
        return "".join(sorted(letters))
    return ""


def _pick(row: dict[str, Any], mapped: str | None, candidates: tuple[str, ...]) -> tuple[str | None, Any]:
    if mapped is not None:
        return (mapped, row[mapped]) if mapped in row else (mapped, None)
    for name in candidates:
        if name in row and row[name] not in (None, ""):
            return name, row[name]
    return None, None


def _is_multi(type_value: Any, answer: str) -> bool:
    if isinstance(type_value, str) and ("多" in type_value or "multi" in type_value.lower()):
        return True
    return len(answer) > 1


def item_from_row(row: dict[str, Any], origin: str, columns: dict[str, str]) -> MCQItem:
    """One public-format row -> MCQItem; a ValueError names what is missing."""
    _, question = _pick(row, columns.get("question"), QUESTION_KEYS)
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"no question (looked for {columns.get('question') or '/'.join(QUESTION_KEYS)})")
    _, raw_options = _pick(row, columns.get("options"), OPTIONS_KEYS)
    options = parse_options(raw_options)
    if not options and "options" not in columns:  # TCMChat: one column per letter
        options = parse_options({k: row[k] for k in LETTERS if isinstance(row.get(k), str) and row[k].strip()})
    if len(options) < 2:
        raise ValueError("fewer than two options")
    answer_name, raw_answer = _pick(row, columns.get("answer"), ANSWER_KEYS)
    answer = parse_answer(raw_answer, options)
    if not answer and answer_name == "answer_idx" and "answer" in row:
        answer = parse_answer(row["answer"], options)
    if not answer:
        raise ValueError(f"answer {raw_answer!r} names none of the options {''.join(options)}")
    _, category = _pick(row, columns.get("category"), CATEGORY_KEYS)
    _, qtype = _pick(row, columns.get("type"), TYPE_KEYS)
    multi = _is_multi(qtype, answer)
    question = question.strip()
    return MCQItem(
        key=fingerprint(question, options),
        origin=origin,
        question=question,
        options=options,
        answer=answer,
        category=str(category).strip() if category is not None else "",
        multi=multi,
        prompt=default_prompt(question, options, multi),
    )


def item_from_record(row: dict[str, Any], origin: str) -> MCQItem:
    """A build-tasks mcq record: the user turn is shown as written; the key comes from meta."""
    meta = row.get("meta") or {}
    if meta.get("task") not in (None, "mcq"):
        raise ValueError(f"meta.task is {meta.get('task')!r}, not mcq")
    options = parse_options(meta.get("options"))
    if len(options) < 2:
        raise ValueError("meta.options holds fewer than two options")
    answer = parse_answer(meta.get("answer"), options)
    if not answer:
        raise ValueError(f"meta.answer {meta.get('answer')!r} names none of the options")
    messages = row.get("messages") or []
    system = next((m["content"] for m in messages if m.get("role") == "system"), None)
    user = next((m["content"] for m in messages if m.get("role") == "user"), None)
    question = str(meta.get("question") or "").strip()
    if not user and not question:
        raise ValueError("neither a user message nor meta.question")
    multi = _is_multi(meta.get("question_type"), answer)
    return MCQItem(
        key=str(row.get("id") or fingerprint(question, options)),
        origin=origin,
        question=question or user,
        options=options,
        answer=answer,
        category=str(meta.get("category") or ""),
        multi=multi,
        prompt=user or default_prompt(question, options, multi),
        system=system,
    )


def load_mcq(path: Path, columns: dict[str, str], split: str | None = None, limit: int | None = None) -> tuple[list[MCQItem], Problems, str]:
    """(items, unusable rows, what was read) of one --data source."""
    path = Path(path)
    problems = Problems()
    items: list[MCQItem] = []
    if is_dir_source(path):
        kind, used, rows = dir_rows(path, split)
        if kind != "sft":
            raise MedmillError(f"{path} holds {kind} records; --task mcq needs an mcq (sft) dir or an exam file")
        for row in rows:
            where = f"{path.name}:{used}:{row.get('id')}"
            try:
                items.append(item_from_record(row, where))
            except ValueError as e:
                problems.add(where, str(e))
        described = f"{path} ({used} split)"
    else:
        for line, value in file_rows(path):
            where = f"{path.name}:{line}"
            if isinstance(value, Exception):
                problems.add(where, str(value))
                continue
            if not isinstance(value, dict):
                problems.add(where, "not an object/row")
                continue
            try:
                items.append(item_from_row(value, where, columns))
            except ValueError as e:
                problems.add(where, str(e))
        described = str(path)
    if limit:
        items = items[:limit]
    if not items:
        hint = f"; first problems: {'; '.join(problems.examples[:2])}" if problems.examples else ""
        raise MedmillError(f"{path}: no multiple-choice item could be read{hint}")
    return _unique(items), problems, described


def _unique(items: list[MCQItem]) -> list[MCQItem]:
    """Keys must be unique for the cache; a repeated question gets its position appended."""
    seen: dict[str, int] = {}
    for item in items:
        n = seen.get(item.key, 0)
        seen[item.key] = n + 1
        if n:
            item.key = f"{item.key}#{n}"
    return items
