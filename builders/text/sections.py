"""Section structure of Chinese medical texts: headings (Markdown `#`, 第X篇/章/节, 一、, （一）, 1 / 1.1 / 1.1.1)
and the heading path in effect at every line, so a chunk can say where in a book it sits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CN_NUM = "一二三四五六七八九十百零〇两"
_MAX_TITLE = 40  # a heading is a short line; longer numbered lines are list items

_PATTERNS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(rf"^第[{_CN_NUM}\d]+篇\s*\S.*$|^第[{_CN_NUM}\d]+篇$"), 10),
    (re.compile(rf"^第[{_CN_NUM}\d]+章(?:\s*\S.*)?$"), 11),
    (re.compile(rf"^第[{_CN_NUM}\d]+节(?:\s*\S.*)?$"), 12),
    (re.compile(rf"^[{_CN_NUM}]{{1,3}}、\s*\S.*$"), 13),
    (re.compile(rf"^[（(][{_CN_NUM}]{{1,3}}[）)]\s*\S.*$"), 14),
]
_MARKDOWN = re.compile(r"^(#{1,6})\s+(\S.*?)\s*#*$")
_NUMBERED = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){0,4})(?:\s+|(?=[^\d.\s]))([^\d.\s].*)$")
_SENTENCE_PUNCT = re.compile(r"[。；！？，]")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Heading:
    rank: int  # smaller = higher in the hierarchy
    title: str


def detect_heading(line: str) -> Heading | None:
    """The heading a line is, or None. Numbered lines count only when short and sentence-free."""
    s = line.strip()
    if not s:
        return None
    m = _MARKDOWN.match(s)
    if m:
        return Heading(len(m.group(1)), m.group(2))
    if len(s) > _MAX_TITLE or _SENTENCE_PUNCT.search(s):
        return None
    for pattern, rank in _PATTERNS:
        if pattern.match(s):
            return Heading(rank, s)
    m = _NUMBERED.match(s)
    if m and not re.match(r"^\d+[年月日岁%]", s) and not re.search(r"[：:]$", s):
        depth = m.group(1).count(".") + 1
        return Heading(14 + depth, s)
    return None


@dataclass
class Section:
    """A run of lines under one heading path; `start`/`end` are character offsets in the text."""

    start: int
    end: int
    headings: list[str]
    rank: int | None = None  # rank of the heading the section starts with (None: no heading line)


def split_sections(text: str) -> list[Section]:
    """Cut `text` at every heading line; each section starts with its heading line (if any)."""
    sections: list[Section] = []
    stack: list[Heading] = []
    start = 0
    offset = 0
    rank: int | None = None
    fence: str | None = None  # the marker of the Markdown code block we are in (``` or ~~~)
    for line in text.split("\n"):
        marker = _FENCE.match(line)
        if marker and (fence is None or marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence)):
            fence = marker.group(1) if fence is None else None
        heading = detect_heading(line) if fence is None and marker is None else None
        if heading is not None:
            if offset > start and text[start:offset].strip():
                sections.append(Section(start, offset, [h.title for h in stack], rank))
            start = offset
            rank = heading.rank
            stack = [h for h in stack if h.rank < heading.rank] + [heading]
        offset += len(line) + 1
    if text[start:].strip():
        sections.append(Section(start, len(text), [h.title for h in stack], rank))
    return sections
