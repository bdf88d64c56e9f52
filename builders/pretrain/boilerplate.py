"""Paragraphs repeated across many documents: copyright pages, publisher front matter, running
footers that survived cleaning, "本文仅供参考" notes. Counted over all documents first (a compact array
of 64-bit keys, not the texts), then removed from every document, with the count per paragraph.

A paragraph's key is its letters and digits (lower case, every run of digits read as 0), so
"©2019 人民卫生出版社" and "©2020 人民卫生出版社" are one paragraph. Paragraphs with fewer than
`min_chars` letters and digits (headings such as 临床表现) are never counted.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from medmill.builders.core.steps import MapStep, StepResult
from medmill.schemas import PretrainRecord, RejectRow

_DIGITS = re.compile(r"\d+")
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass
class BoilerplateConfig:
    min_docs: int = 5  # a paragraph found in at least this many documents is boilerplate; 0 = off
    min_chars: int = 8


def paragraph_key(line: str, min_chars: int) -> int | None:
    """Texts reach here normalised (NFC, full-width letters and digits made ASCII), so lower case
    and dropping punctuation and spaces is enough (no NFKC per line: it was half the cost)."""
    if len(line) < min_chars:
        return None
    norm = _DIGITS.sub("0", _NOT_WORD.sub("", line.lower()))
    if len(norm) < min_chars:
        return None
    return xxhash.xxh3_64_intdigest(norm.encode())


class ParagraphCounter:
    """Document frequency of every paragraph key (each document counts a paragraph once)."""

    def __init__(self, config: BoilerplateConfig) -> None:
        self.config = config
        self._keys = array("Q")
        self.documents = 0

    def add(self, text: str) -> None:
        self.documents += 1
        keys = {k for line in text.split("\n") if (k := paragraph_key(line, self.config.min_chars)) is not None}
        self._keys.extend(keys)

    def repeated(self) -> dict[int, int]:
        """{key: documents} of every paragraph at or above the threshold."""
        if self.config.min_docs <= 0 or not len(self._keys):
            return {}
        keys, counts = np.unique(np.frombuffer(self._keys, dtype=np.uint64), return_counts=True)
        hit = counts >= self.config.min_docs
        return dict(zip(keys[hit].tolist(), counts[hit].tolist(), strict=True))


@dataclass
class BoilerplateRemover:
    """Removes repeated paragraphs and keeps what it removed (one example text per paragraph)."""

    repeated: dict[int, int]
    config: BoilerplateConfig
    removed_lines: int = 0
    documents_touched: int = 0
    documents_emptied: int = 0
    examples: dict[int, str] = field(default_factory=dict)

    def strip(self, text: str) -> str:
        if not self.repeated:
            return text
        kept, dropped = [], 0
        for line in text.split("\n"):
            key = paragraph_key(line, self.config.min_chars)
            if key is not None and key in self.repeated:
                dropped += 1
                self.examples.setdefault(key, line.strip())
                continue
            kept.append(line)
        if not dropped:
            return text
        self.removed_lines += dropped
        self.documents_touched += 1
        out = "\n".join(kept).strip()
        if not out:
            self.documents_emptied += 1
        return out

    def stats(self, top: int = 20) -> dict[str, Any]:
        """What the card and manifest report: the threshold, totals and the most repeated paragraphs."""
        ranked = sorted(self.examples, key=lambda k: (-self.repeated[k], self.examples[k]))
        return {
            "min_docs": self.config.min_docs,
            "min_chars": self.config.min_chars,
            "repeated_paragraphs": len(self.repeated),
            "paragraphs_removed": self.removed_lines,
            "documents_touched": self.documents_touched,
            "documents_emptied": self.documents_emptied,
            "top": [{"paragraph": self.examples[k][:120], "documents": self.repeated[k]} for k in ranked[:top]],
        }


def strip_repeated_paragraphs(
    records: list[PretrainRecord], counter: ParagraphCounter, min_doc_chars: int, stage: str = "boilerplate"
) -> tuple[list[PretrainRecord], list[RejectRow], dict[str, Any]]:
    """Remove the paragraphs `counter` found repeated from every record; a record left empty or
    shorter than `min_doc_chars` (no spaces counted) is a reject. Returns kept, rejects, stats."""
    remover = BoilerplateRemover(counter.repeated(), counter.config)
    kept, rejects = strip_records(records, remover, min_doc_chars, stage)
    return kept, rejects, remover.stats()


def strip_records(
    records: list[PretrainRecord], remover: BoilerplateRemover, min_doc_chars: int, stage: str = "boilerplate"
) -> tuple[list[PretrainRecord], list[RejectRow]]:
    """`strip_repeated_paragraphs` with a given remover (which notes what it removed): kept, rejects."""
    kept: list[PretrainRecord] = []
    rejects: list[RejectRow] = []
    for i, r in enumerate(records):
        records[i] = None  # type: ignore[call-overload]  # the stripped copy replaces it: one copy in memory
        text = remover.strip(r.text)
        if not text:
            rejects.append(RejectRow(stage=stage, reason="boilerplate_only", message="every paragraph is repeated boilerplate", source=r.source, raw=r.to_row()))
            continue
        size = len("".join(text.split()))
        if size < min_doc_chars:
            rejects.append(RejectRow(stage=stage, reason="too_short", message=f"{size} chars < --min-doc-chars {min_doc_chars}", source=r.source, raw=r.to_row()))
            continue
        kept.append(r if text == r.text else r.model_copy(update={"id": PretrainRecord.make_id(text), "text": text}))
    return kept, rejects


class StripBoilerplateStep(MapStep):
    """Repeated-paragraph removal as a map step, for streamed builds: the repeated keys (counted over
    every document in a first pass) travel with the step; what each batch removed is folded into the
    stats `strip_repeated_paragraphs` reports for the whole input."""

    name = "generate"

    def __init__(self, repeated: dict[int, int], config: BoilerplateConfig, min_doc_chars: int) -> None:
        self.repeated, self.config, self.min_doc_chars = repeated, config, min_doc_chars

    def __call__(self, records: list[PretrainRecord]) -> StepResult:
        remover = BoilerplateRemover(self.repeated, self.config)
        kept, rejects = strip_records(records, remover, self.min_doc_chars)
        part = {"removed": remover.removed_lines, "touched": remover.documents_touched,
                "emptied": remover.documents_emptied, "examples": remover.examples}
        return StepResult(kept, rejects, Counter({"boilerplate.paragraphs_removed": remover.removed_lines}), part)

    def fold_stats(self, acc: BoilerplateRemover | None, part: dict[str, Any]) -> BoilerplateRemover:
        acc = acc if acc is not None else BoilerplateRemover(self.repeated, self.config)
        acc.removed_lines += part["removed"]
        acc.documents_touched += part["touched"]
        acc.documents_emptied += part["emptied"]
        for key, line in part["examples"].items():
            acc.examples.setdefault(key, line)
        return acc

    def final_stats(self, acc: BoilerplateRemover | None) -> dict[str, Any]:
        return {"boilerplate": (acc or BoilerplateRemover(self.repeated, self.config)).stats()}
