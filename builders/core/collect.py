"""What a build produces, in one type: `Collector` (records, the reject stream, counters, the builder's
own statistics tables, prompts and LLM usage). Rejects leave every stage through a `RejectSink`, a temp file that grows on disk and is
copied into rejects.jsonl at the end, so memory does not grow with the number of rejects."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeAlias

from medmill.schemas import Record, RejectRow

# One table of a builder's own statistics (manifest `stats`, the card's "Build statistics"): measures by
# name (values may nest one level), or rows of a per-item table (per input file, per source).
StatsTable: TypeAlias = dict[str, Any] | list[dict[str, Any]]


class RejectSink:
    """Reject rows written as they come (JSON lines in a temp file), counted by `stage/reason`."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory)
        self.by_reason: Counter = Counter()

    def write(self, row: RejectRow) -> None:
        self._file.write(row.to_json() + "\n")
        self.by_reason[f"{row.stage}/{row.reason}"] += 1

    def extend(self, rows: Iterable[RejectRow]) -> None:
        for row in rows:
            self.write(row)

    def __len__(self) -> int:
        return sum(self.by_reason.values())

    def lines(self) -> Iterator[str]:
        """The JSON lines written so far, in order (writing may go on afterwards)."""
        self._file.flush()
        self._file.seek(0)
        try:
            yield from self._file
        finally:
            self._file.seek(0, 2)

    def __iter__(self) -> Iterator[RejectRow]:
        for line in self.lines():
            yield RejectRow.model_validate(json.loads(line))

    def close(self) -> None:
        self._file.close()


@dataclass
class Collector:
    """Records, rejects (a stream), counters, the builder's statistics tables, and what the build used
    (prompts, LLM settings, usage).

    Generators and strategies fill one of these; `run_build` turns it into the manifest. After curation
    `records` holds the records that will be written and `rejects` every reject, so `Builder.finish` and
    `Builder.describe` can report final figures. `stats` (name -> `StatsTable`) goes to the manifest's
    `stats` and the card; it is where a builder keeps what its run found (never on the builder object)."""

    records: list[Record] = field(default_factory=list)
    rejects: RejectSink = field(default_factory=RejectSink)
    counters: Counter = field(default_factory=Counter)
    stats: dict[str, StatsTable] = field(default_factory=dict)
    generated: int = 0  # records generation made (set by run_build; `records` shrink in curation)
    prompts: list[dict[str, str]] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.records.append(record)

    def reject(self, row: RejectRow) -> None:
        self.rejects.write(row)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def prompt(self, ref: dict[str, str]) -> None:
        """Note a prompt (id + version) the build used, once."""
        if ref not in self.prompts:
            self.prompts.append(ref)
