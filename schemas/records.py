"""Output records (sft / preference / pretrain), provenance and reject rows.

The shapes follow trl's conversational formats so trainers read dataset dirs without conversion.
On disk `meta` is a JSON string (keys vary per builder; parquet needs one schema per file).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .names import printable_json, printable_name, printable_value

RecordKind = Literal["sft", "preference", "pretrain"]
Role = Literal["system", "user", "assistant"]

KIND_COLUMNS: dict[str, list[str]] = {
    "sft": ["id", "messages", "source", "meta"],
    "preference": ["id", "prompt", "chosen", "rejected", "source", "meta"],
    "pretrain": ["id", "text", "source", "meta"],
}


def meta_of(value: Any) -> dict[str, Any] | None:
    """A shard's `meta` cell as a dict: JSON text parsed ("" and null are {}); None when it is not a JSON object."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def _not_blank(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("content is empty or whitespace-only")
    return value


def normalise_for_compare(text: str) -> str:
    """NFKC, no whitespace, lower case: the form in which two answers count as the same."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def canonical_json(value: Any) -> str:
    return printable_json(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")))


def stable_id(kind: str, payload: Any) -> str:
    """Content hash of a record's trainable payload: same content, same id, on every machine."""
    digest = hashlib.sha256(f"{kind}\x00{canonical_json(payload)}".encode()).hexdigest()
    return digest[:20]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return _not_blank(value)


def turn_problems(messages: list[Message], *, last: Role | None) -> list[str]:
    """Role order rules: optional leading system, then user/assistant alternating from user."""
    problems: list[str] = []
    if not messages:
        return ["no messages"]
    body = messages
    if messages[0].role == "system":
        body = messages[1:]
    if any(m.role == "system" for m in body):
        problems.append("a system message may only come first")
    body = [m for m in body if m.role != "system"]
    if not body:
        return problems + ["no user or assistant turn"]
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.role != expected:
            problems.append(f"turn {i + 1} is {m.role}, expected {expected} (roles must alternate from user)")
            break
    if last is not None and body[-1].role != last:
        problems.append(f"last turn is {body[-1].role}, expected {last}")
    return problems


class Source(BaseModel):
    """Where a record came from: file and line/offset, the entity/chunk/paper it rests on, the builder."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    line: int | None = None
    offset: int | None = None
    ref: str | None = None
    group: str | None = None
    builder: str = "unknown"
    builder_version: str = "0"

    @field_validator("file", "ref", "group")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # a file name that is not valid UTF-8 must still be writable to parquet and JSON
        return None if value is None else printable_name(value)


class _RecordBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    source: Source
    meta: dict[str, Any] = Field(default_factory=dict)

    kind: str = "base"

    def to_row(self) -> dict[str, Any]:
        row = self.model_dump(exclude={"kind"})
        row["meta"] = canonical_json(self.meta)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]):
        data = dict(row)
        meta = data.get("meta")
        if isinstance(meta, str):
            data["meta"] = json.loads(meta) if meta else {}
        elif meta is None:
            data["meta"] = {}
        if isinstance(data.get("source"), dict):
            # parquet structs store absent fields as nulls
            data["source"] = {k: v for k, v in data["source"].items() if v is not None}
        return cls.model_validate(data)


class SFTRecord(_RecordBase):
    kind: Literal["sft"] = Field(default="sft", exclude=True)
    messages: list[Message]

    @model_validator(mode="after")
    def _roles(self) -> SFTRecord:
        problems = turn_problems(self.messages, last="assistant")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @staticmethod
    def make_id(messages: list[Message] | list[dict]) -> str:
        return stable_id("sft", [_as_dict(m) for m in messages])


class PreferenceRecord(_RecordBase):
    kind: Literal["preference"] = Field(default="preference", exclude=True)
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]

    @model_validator(mode="after")
    def _pair(self) -> PreferenceRecord:
        problems = turn_problems(self.prompt, last="user")
        for name, side in (("chosen", self.chosen), ("rejected", self.rejected)):
            if not side:
                problems.append(f"{name} is empty")
            elif any(m.role != "assistant" for m in side):
                problems.append(f"{name} must hold assistant messages only")
        if self.chosen and self.rejected:
            a = normalise_for_compare("".join(m.content for m in self.chosen))
            b = normalise_for_compare("".join(m.content for m in self.rejected))
            if a == b:
                problems.append("chosen and rejected are the same text")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @staticmethod
    def make_id(prompt, chosen, rejected) -> str:
        return stable_id(
            "preference",
            [[_as_dict(m) for m in prompt], [_as_dict(m) for m in chosen], [_as_dict(m) for m in rejected]],
        )


class PretrainRecord(_RecordBase):
    kind: Literal["pretrain"] = Field(default="pretrain", exclude=True)
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_blank(value)

    @staticmethod
    def make_id(text: str) -> str:
        return stable_id("pretrain", text)


Record = SFTRecord | PreferenceRecord | PretrainRecord

_KIND_CLASS: dict[str, type[_RecordBase]] = {
    "sft": SFTRecord,
    "preference": PreferenceRecord,
    "pretrain": PretrainRecord,
}


def record_class(kind: str) -> type[_RecordBase]:
    try:
        return _KIND_CLASS[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {sorted(_KIND_CLASS)}") from None


def _as_dict(m: Message | dict) -> dict:
    return m.model_dump() if isinstance(m, Message) else {"role": m["role"], "content": m["content"]}


class RejectRow(BaseModel):
    """One dropped record or input: which stage dropped it, a reason code, and what it was."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    reason: str
    message: str = ""
    source: Source | None = None
    raw: Any = None

    def to_json(self) -> str:
        try:
            data = self.model_dump(mode="json")
        except UnicodeEncodeError:  # a name that is not valid UTF-8 in the message or raw input
            data = printable_value(self.model_dump(mode="python"))
        return printable_json(json.dumps(data, ensure_ascii=False, sort_keys=True, default=str))
