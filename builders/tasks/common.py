"""What every task module returns, and the chat record every task renders to."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medmill.builders.tasks import BUILDER, BUILDER_VERSION
from medmill.schemas import Message, RejectRow, SFTRecord, Source


@dataclass
class TaskOutput:
    records: list[SFTRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)

    def reject(self, stage: str, reason: str, message: str, source: Source, raw: Any = None) -> None:
        self.counters[f"rejected.{reason}"] += 1
        self.rejects.append(RejectRow(stage=stage, reason=reason, message=message, source=source, raw=raw))


def source(*, ref: str | None, group: str | None, file: str | None = None,
           line: int | None = None, offset: int | None = None) -> Source:
    return Source(file=file, line=line, offset=offset, ref=ref, group=group, builder=BUILDER,
                  builder_version=BUILDER_VERSION)


def chat_record(user: str, assistant: str, meta: dict[str, Any], src: Source, system: str | None = None) -> SFTRecord:
    """[optional system, user, assistant] with a content-hash id."""
    messages = [Message(role="system", content=system)] if system else []
    messages += [Message(role="user", content=user), Message(role="assistant", content=assistant)]
    return SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=src, meta=meta)
