"""Inputs of build-prefs, read into `PromptItem`s: a prompt, maybe a reference answer, maybe a given rejected.

- sft dataset dirs: prompt = every turn but the last, reference = the last assistant turn;
- preference dataset dirs and MedicalGPT / TRL preference files: pairs to re-validate (chosen becomes the
  reference, rejected the given rejected answer);
- prompt files (JSON / JSON Lines / CSV) with a question column and an optional answer column.

Every malformed record becomes a reject row naming file and line; a whole unreadable input is a
MedmillError (one line for the user).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medmill.builders.readers.csvio import read_csv_table, row_dict
from medmill.builders.readers.textio import DecodedText, iter_json_items, read_text, sniff_json_layout
from medmill.schemas import Message, RejectRow, Source
from medmill.schemas.dataset_dir import detect_kind, iter_rows
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import normalise_for_compare, turn_problems

STAGE = "read"
QUESTION_FIELDS = ("question", "prompt", "instruction", "query", "ask", "问题")
ANSWER_FIELDS = ("answer", "output", "response", "reference", "答案")
ROLE_NAMES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "system": "system",
}


@dataclass
class PromptItem:
    """One prompt to make a pair for. `prompt` ends with a user turn."""

    prompt: list[Message]
    source: Source
    origin: str  # sft_dir | preference_dir | prompt_file | medicalgpt | medicalgpt_legacy | trl
    reference: str | None = None
    given_rejected: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable key of the prompt text (the same prompt from two inputs has one key)."""
        text = "\x00".join(f"{m.role}:{normalise_for_compare(m.content)}" for m in self.prompt)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FieldNames:
    """Which columns of a prompt file hold the question and the answer (None: try the usual names)."""

    question: str | None = None
    answer: str | None = None


@dataclass
class ReadResult:
    items: list[PromptItem] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)


class _BadRecord(ValueError):
    """A record that cannot become a PromptItem; the message goes into the reject row."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def read_inputs(paths: list[Path], fields: FieldNames | None = None) -> ReadResult:
    result = ReadResult()
    result.items = list(iter_inputs(paths, fields, result.rejects))
    return result


def iter_inputs(paths: list[Path], fields: FieldNames | None, rejects: list[RejectRow]) -> Iterator[PromptItem]:
    """The items of `read_inputs` one by one, as read (a streamed build keeps none of them); each
    reject is appended to `rejects` when its line is read."""
    fields = fields or FieldNames()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from _read_dataset_dir(path, rejects)
        else:
            yield from _read_file(path, fields, rejects)


# ---- dataset dirs -------------------------------------------------------------------------------


def _read_dataset_dir(path: Path, rejects: list[RejectRow]) -> Iterator[PromptItem]:
    kind = detect_kind(path)
    if kind not in ("sft", "preference"):
        raise MedmillError(f"{path} is a {kind} dataset dir; build-prefs reads sft or preference dirs")
    for split, shard, row_no, row in iter_rows(path):
        where = f"{path.name}/{split}/{shard.name}"
        src = Source(**(row.get("source") or {}))
        try:
            meta = _meta_dict(row.get("meta"))
            if kind == "sft":
                messages = [Message(**m) for m in row["messages"]]
                if not messages or messages[-1].role != "assistant":
                    raise _BadRecord("bad_turns", "last turn is not an assistant answer")
                item = PromptItem(
                    prompt=_prompt_turns(messages[:-1]),
                    reference=messages[-1].content,
                    source=src,
                    origin="sft_dir",
                    meta=meta,
                )
            else:
                item = PromptItem(
                    prompt=_prompt_turns([Message(**m) for m in row["prompt"]]),
                    reference=_single_answer(row["chosen"], "chosen"),
                    given_rejected=_single_answer(row["rejected"], "rejected"),
                    source=src,
                    origin="preference_dir",
                    meta=meta,
                )
        except (_BadRecord, ValidationError, KeyError, TypeError, ValueError) as e:
            rejects.append(_reject(e, Source(file=where, line=row_no + 1, ref=src.ref, group=src.group), row))
            continue
        yield _grouped(item)


def _grouped(item: PromptItem) -> PromptItem:
    """Records without a group are grouped by their prompt, so equal prompts never straddle splits."""
    if not item.source.group:
        item.source = item.source.model_copy(update={"group": f"prompt:{item.key}"})
    return item


def _meta_dict(meta: Any) -> dict[str, Any]:
    if isinstance(meta, dict):
        return meta
    if not meta:
        return {}
    value = json.loads(meta)
    if not isinstance(value, dict):
        raise _BadRecord("bad_meta", "meta is not a JSON object")
    return value


# ---- files ----------------------------------------------------------------------------------------


def _read_file(path: Path, fields: FieldNames, rejects: list[RejectRow]) -> Iterator[PromptItem]:
    decoded = read_text(path)
    if not decoded.text.strip():
        raise MedmillError(f"{path} is empty: no prompts or pairs to read")
    if sniff_json_layout(decoded.text) == "none":
        rows = _csv_rows(decoded, fields)
    else:
        rows = (
            (item.line, item.value, ("invalid_json", item.error) if item.error else None, item.raw)
            for item in iter_json_items(decoded)
        )
    for line, value, problem, raw in rows:
        src = Source(file=str(path), line=line)
        if problem:
            reason, message = problem
            rejects.append(RejectRow(stage=STAGE, reason=reason, message=message, source=src, raw=raw))
            continue
        try:
            item = _item_from_record(value, fields, src)
        except (_BadRecord, ValidationError, TypeError, ValueError) as e:
            rejects.append(_reject(e, src, value))
            continue
        yield _grouped(item)


def _csv_rows(decoded: DecodedText, fields: FieldNames) -> Iterator[tuple[int, Any, tuple[str, str] | None, Any]]:
    """(line, row, (reason, message) | None, raw) per CSV/TSV row; a header without a question column
    is a MedmillError. A badly quoted row is an error on its line and later rows are still read."""
    text = decoded.text
    head = text.lstrip("\n").split("\n", 1)[0]
    table = read_csv_table(text, "\t" if head.count("\t") > head.count(",") else ",")
    if table is not None and table.header_error:
        raise MedmillError(f"{decoded.path}: unreadable CSV header (line {table.header_line}): {table.header_error}")
    header = table.header if table else []
    wanted = [fields.question] if fields.question else list(QUESTION_FIELDS)
    if table is None or not any(name in header for name in wanted):
        raise MedmillError(
            f"{decoded.path}: not JSON, and no question column ({'/'.join(wanted)}) in the CSV header {header[:8]}; "
            "name it with --question-field"
        )
    for row in table.rows:
        if row.cells is None:
            yield row.line, None, ("bad_csv", row.error or "unreadable row"), row.raw
            continue
        if not row.cells:
            continue  # a blank line
        values, extra = row_dict(header, row.cells)
        if extra:
            yield row.line, None, ("extra_fields", f"row has {len(row.cells)} fields, header has {len(header)}"), values
        else:
            yield row.line, values, None, None


def _item_from_record(value: Any, fields: FieldNames, src: Source) -> PromptItem:
    if isinstance(value, str):  # a JSON list of questions
        return PromptItem(prompt=[Message(role="user", content=_text(value, "question"))], source=src, origin="prompt_file")
    if not isinstance(value, dict):
        raise _BadRecord("unknown_format", f"expected a JSON object, got {type(value).__name__}")
    if {"conversations", "chosen", "rejected"} <= value.keys():
        return PromptItem(
            prompt=_prompt_turns(_messages(value["conversations"])),
            reference=_answer_text(value["chosen"], "chosen"),
            given_rejected=_answer_text(value["rejected"], "rejected"),
            source=src,
            origin="medicalgpt",
        )
    if {"question", "response_chosen", "response_rejected"} <= value.keys():
        return PromptItem(
            prompt=[Message(role="user", content=_text(value["question"], "question"))],
            reference=_text(value["response_chosen"], "response_chosen"),
            given_rejected=_text(value["response_rejected"], "response_rejected"),
            source=src,
            origin="medicalgpt_legacy",
        )
    if {"prompt", "chosen", "rejected"} <= value.keys():
        prompt = value["prompt"]
        turns = [Message(role="user", content=_text(prompt, "prompt"))] if isinstance(prompt, str) else _messages(prompt)
        return PromptItem(
            prompt=_prompt_turns(turns),
            reference=_answer_text(value["chosen"], "chosen"),
            given_rejected=_answer_text(value["rejected"], "rejected"),
            source=src,
            origin="trl",
        )
    for key in ("messages", "conversations"):
        if key in value:
            turns = _messages(value[key])
            if not turns or turns[-1].role != "assistant":
                raise _BadRecord("bad_turns", f"{key} does not end with an assistant answer")
            return PromptItem(prompt=_prompt_turns(turns[:-1]), reference=turns[-1].content, source=src, origin="prompt_file")
    question = _pick(value, fields.question, QUESTION_FIELDS)
    if question is None:
        names = fields.question or "/".join(QUESTION_FIELDS)
        raise _BadRecord("unknown_format", f"no question field ({names}) and no preference or chat fields")
    text = _text(value[question], question)
    extra = value.get("input") if question == "instruction" else None
    if isinstance(extra, str) and extra.strip():
        text = f"{text}\n{extra.strip()}"
    answer = _pick(value, fields.answer, ANSWER_FIELDS)
    reference = value.get(answer) if answer else None
    reference = reference.strip() if isinstance(reference, str) and reference.strip() else None
    return PromptItem(prompt=[Message(role="user", content=text)], reference=reference, source=src, origin="prompt_file")


def _pick(value: dict[str, Any], wanted: str | None, defaults: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted if wanted in value else None
    return next((k for k in defaults if k in value), None)


# ---- field helpers --------------------------------------------------------------------------------


def _text(value: Any, name: str) -> str:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if not isinstance(value, str):
        raise _BadRecord("bad_field", f"{name} is {type(value).__name__}, expected a string")
    if not value.strip():
        raise _BadRecord("empty_field", f"{name} is empty")
    return value.strip()


def _messages(value: Any) -> list[Message]:
    if not isinstance(value, list):
        raise _BadRecord("bad_field", f"expected a list of messages, got {type(value).__name__}")
    turns = []
    for m in value:
        if not isinstance(m, dict):
            raise _BadRecord("bad_field", "a message is not an object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role not in ROLE_NAMES:
            raise _BadRecord("bad_field", f"unknown message role {role!r}")
        turns.append(Message(role=ROLE_NAMES[role], content=_text(content, "message content")))
    return turns


def _answer_text(value: Any, name: str) -> str:
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return _single_answer(_messages(value), name)
    return _text(value, name)


def _single_answer(messages: list[Any], name: str) -> str:
    turns = [m if isinstance(m, Message) else Message(**m) for m in messages]
    if len(turns) != 1 or turns[0].role != "assistant":
        raise _BadRecord("bad_turns", f"{name} must be one assistant message, got {[m.role for m in turns]}")
    return turns[0].content


def _prompt_turns(turns: list[Message]) -> list[Message]:
    problems = turn_problems(turns, last="user")
    if problems:
        raise _BadRecord("bad_turns", "prompt: " + "; ".join(problems))
    return turns


def _reject(error: Exception, src: Source, raw: Any) -> RejectRow:
    if isinstance(error, _BadRecord):
        reason, message = error.reason, str(error)
    elif isinstance(error, ValidationError):
        reason = "invalid_record"
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
    else:
        reason, message = "invalid_record", f"{type(error).__name__}: {error}"
    return RejectRow(stage=STAGE, reason=reason, message=message, source=src, raw=raw)
