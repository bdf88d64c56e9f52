"""Text helpers shared by the curation stages: which text of a record is compared, and
rewriting a record's texts (redaction, boilerplate stripping) while keeping its id a content hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medmill.schemas import Message, PreferenceRecord, PretrainRecord, Record, SFTRecord
from medmill.schemas.errors import MedmillError

# --- which text of a record is compared (dedup, decontamination) -------------------------------

DEFAULT_FIELDS: dict[str, list[str]] = {"sft": ["user", "answer"], "preference": ["prompt"], "pretrain": ["text"]}
FIELDS_BY_KIND: dict[str, set[str]] = {
    "sft": {"system", "user", "assistant", "answer", "all"},
    "preference": {"system", "prompt", "chosen", "rejected", "all"},
    "pretrain": {"text", "all"},
}


def check_fields(kind: str, fields: list[str]) -> list[str]:
    fields = fields or DEFAULT_FIELDS[kind]
    unknown = [f for f in fields if f not in FIELDS_BY_KIND[kind]]
    if unknown:
        raise MedmillError(
            f"--fields {','.join(unknown)} not known for {kind} records; use {', '.join(sorted(FIELDS_BY_KIND[kind]))}"
        )
    return fields


def record_text(record: Record, fields: list[str]) -> str:
    """The text of `fields` of one record, joined by newlines ("answer" = last assistant turn)."""
    parts: list[str] = []
    if isinstance(record, PretrainRecord):
        return record.text
    if isinstance(record, SFTRecord):
        return turns_text([(m.role, m.content) for m in record.messages], fields)
    assert isinstance(record, PreferenceRecord)
    for f in fields:
        if f == "all":
            parts += [m.content for side in (record.prompt, record.chosen, record.rejected) for m in side]
        elif f == "system":
            parts += [m.content for m in record.prompt if m.role == "system"]
        elif f == "prompt":
            parts += [m.content for m in record.prompt if m.role != "system"]
        else:
            parts += [m.content for m in getattr(record, f)]
    return "\n".join(parts)


def turns_text(turns: list[tuple[str, str]], fields: list[str]) -> str:
    """record_text of an sft record given as its (role, content) turns."""
    parts: list[str] = []
    for f in fields:
        if f == "all":
            parts += [text for _role, text in turns]
        elif f == "answer":
            parts += [text for role, text in turns if role == "assistant"][-1:]
        else:
            parts += [text for role, text in turns if role == f]
    return "\n".join(parts)


@dataclass
class TextView:
    """The texts of a batch of sft or pretrain records without the record objects (a streamed batch
    judges its rows from their arrow columns): per record, the (role, text) of every text in
    `all_texts` order ("text" is a pretrain record's role)."""

    kind: str
    turns: list[list[tuple[str, str]]]

    def __post_init__(self) -> None:
        if self.kind not in ("sft", "pretrain"):
            raise ValueError(f"no text view of {self.kind} records")

    def __len__(self) -> int:
        return len(self.turns)

    def take(self, positions: list[int]) -> TextView:
        return TextView(self.kind, [self.turns[i] for i in positions])

    def judged(self, i: int) -> list[tuple[str, str]]:
        """= judged_texts (every text: sft and pretrain records have no rejected side)."""
        return self.turns[i]

    def questions_answers(self, i: int) -> tuple[list[str], list[str]]:
        """= quality's split: (user turns, assistant turns); a pretrain text is an answer."""
        turns = self.turns[i]
        if self.kind == "pretrain":
            return [], [turns[0][1]]
        return [t for r, t in turns if r == "user"], [t for r, t in turns if r == "assistant"]

    def last_pair(self, i: int) -> tuple[str, list[str]] | None:
        """= quality's last pair: the last user turn and the last assistant turn (sft)."""
        if self.kind == "pretrain":
            return None
        questions, answers = self.questions_answers(i)
        return questions[-1], answers[-1:]

    def text(self, i: int, fields: list[str]) -> str:
        """= record_text"""
        return self.turns[i][0][1] if self.kind == "pretrain" else turns_text(self.turns[i], fields)


def all_texts(record: Record) -> list[tuple[str, str]]:
    """(role, text) of every text in a record: what PII and safety scan."""
    if isinstance(record, PretrainRecord):
        return [("text", record.text)]
    if isinstance(record, SFTRecord):
        return [(m.role, m.content) for m in record.messages]
    return [(m.role, m.content) for side in (record.prompt, record.chosen, record.rejected) for m in side]


def judged_texts(record: Record) -> list[tuple[str, str]]:
    """What safety rules judge: everything a model should learn from. A preference pair's rejected
    answer is worse on purpose (an inserted 不用就医 is the point), so it is left out."""
    if isinstance(record, PreferenceRecord):
        return [(m.role, m.content) for side in (record.prompt, record.chosen) for m in side]
    return all_texts(record)


# --- rewriting a record ---------------------------------------------------------------------------

TextFn = Callable[[str, str], str]  # (role, text) -> new text


def rewrite(record: Record, fn: TextFn) -> Record:
    """Apply `fn` to every text of `record`; when something changed, return a copy with a fresh id.

    Raises ValueError when a rewritten text is empty (the caller turns that into a reject).
    """
    if isinstance(record, PretrainRecord):
        text = fn("text", record.text)
        if text == record.text:
            return record
        return PretrainRecord(id=PretrainRecord.make_id(text), text=text, source=record.source, meta=record.meta)

    def redo(msgs: list[Message]) -> list[Message]:
        return [m if (t := fn(m.role, m.content)) == m.content else Message(role=m.role, content=t) for m in msgs]

    if isinstance(record, SFTRecord):
        messages = redo(record.messages)
        if messages == record.messages:
            return record
        return SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=record.source, meta=record.meta)
    prompt, chosen, rejected = redo(record.prompt), redo(record.chosen), redo(record.rejected)
    if (prompt, chosen, rejected) == (record.prompt, record.chosen, record.rejected):
        return record
    return PreferenceRecord(
        id=PreferenceRecord.make_id(prompt, chosen, rejected),
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source=record.source,
        meta=record.meta,
    )


def with_meta(record: Record, **items: object) -> Record:
    """A copy of `record` with `meta` extended (meta does not enter the id)."""
    return record.model_copy(update={"meta": {**record.meta, **items}})
