"""Cut a cleaned text into pretraining documents: the whole file, each section, or each paragraph,
never longer than `max_chars`, cut at paragraph and then sentence boundaries.

Cleaned text holds one paragraph or heading per line (text_clean joins broken lines). Heading lines
never stand alone as documents: they go with the text they introduce. Every piece keeps its character
offset in the cleaned text and the heading path in effect there.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from medmill.builders.text.chunking import CHINESE_SEPARATORS
from medmill.builders.text.sections import Section, detect_heading, split_sections

DocUnit = Literal["file", "section", "paragraph"]


@dataclass
class DocPiece:
    text: str
    offset: int
    headings: list[str] = field(default_factory=list)


@dataclass
class _Block:
    start: int
    end: int


def make_documents(text: str, unit: DocUnit, max_chars: int, min_chars: int = 1) -> list[DocPiece]:
    """Documents of one cleaned text, in order; each at most `max_chars` characters long."""
    if not text.strip():
        return []
    sections = split_sections(text)
    if unit == "file":
        blocks = [_Block(0, len(text))]
    elif unit == "section":
        blocks = _merge_small([_Block(s.start, s.end) for s in sections], text, min_chars)
    else:
        blocks = _merge_small(_paragraph_blocks(text), text, min_chars)
    starts = [s.start for s in sections]
    pieces: list[DocPiece] = []
    for block in blocks:
        for offset, piece in cut_text(text, block.start, block.end, max_chars):
            pieces.append(DocPiece(piece, offset, _headings_at(sections, starts, offset + _body_start(piece))))
    return pieces


def _body_start(piece: str) -> int:
    """Offset of the first line that is not a heading (the path of the text, not of its lead-in)."""
    offset = 0
    for line in piece.split("\n"):
        if detect_heading(line) is None:
            return offset
        offset += len(line) + 1
    return 0


def _headings_at(sections: list[Section], starts: list[int], offset: int) -> list[str]:
    i = bisect.bisect_right(starts, offset) - 1
    return list(sections[i].headings) if i >= 0 else []


def _paragraph_blocks(text: str) -> list[_Block]:
    """One block per paragraph line; heading lines join the paragraph after them."""
    blocks: list[_Block] = []
    pending: int | None = None  # start of heading lines waiting for their paragraph
    offset = 0
    for line in text.split("\n"):
        end = offset + len(line)
        if line.strip():
            if detect_heading(line) is not None:
                pending = offset if pending is None else pending
            else:
                blocks.append(_Block(offset if pending is None else pending, end))
                pending = None
        offset = end + 1
    if pending is not None:
        blocks.append(_Block(pending, len(text)))
    return blocks


def _merge_small(blocks: list[_Block], text: str, min_chars: int) -> list[_Block]:
    """A block shorter than `min_chars` (a bare heading, a one-line item) joins the next block; a
    short last block joins the one before."""
    out: list[_Block] = []
    pending: _Block | None = None
    for b in blocks:
        if not text[b.start : b.end].strip():
            continue
        if pending is not None:
            b = _Block(pending.start, b.end)
            pending = None
        if len(text[b.start : b.end].strip()) < min_chars:
            pending = b
            continue
        out.append(b)
    if pending is not None:
        if out:
            out[-1] = _Block(out[-1].start, pending.end)
        else:
            out.append(pending)
    return out


def cut_text(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, str]]:
    """(offset, piece) covering text[start:end], stripped, each at most `max_chars` long: whole
    paragraphs packed together, a longer paragraph cut at sentence ends (。！？；, then ，)."""
    body = text[start:end]
    stripped = body.strip()
    if not stripped:
        return []
    lead = len(body) - len(body.lstrip())
    if len(stripped) <= max_chars:
        return [(start + lead, stripped)]
    out: list[tuple[int, str]] = []
    cur_start: int | None = None
    cur_end = 0
    offset = start
    for line in body.split("\n"):
        line_start, line_end = offset, offset + len(line)
        offset = line_end + 1
        if not line.strip():
            continue
        if cur_start is not None and line_end - cur_start <= max_chars:
            cur_end = line_end
            continue
        if cur_start is not None:
            cur_start = _close(text, cur_start, cur_end, out)
            if cur_start is not None and line_end - cur_start <= max_chars:
                cur_end = line_end  # trailing headings moved on to the text they introduce
                continue
            if cur_start is not None:
                out.append((cur_start, text[cur_start:cur_end].strip()))
                cur_start = None
        if line_end - line_start <= max_chars:
            cur_start, cur_end = line_start, line_end
        else:
            out.extend(_split_sentences(text, line_start, line_end, max_chars))
    if cur_start is not None:
        out.append((cur_start, text[cur_start:cur_end].strip()))
    return [(o, p) for o, p in out if p]


def _close(text: str, start: int, end: int, out: list[tuple[int, str]]) -> int | None:
    """Emit text[start:end] without its trailing heading lines; return where those headings start
    (they lead the next piece), or None."""
    lines = text[start:end].split("\n")
    keep = len(lines)
    while keep > 1 and detect_heading(lines[keep - 1]) is not None:
        keep -= 1
    if keep == len(lines):
        out.append((start, text[start:end].strip()))
        return None
    cut = start + sum(len(x) + 1 for x in lines[:keep])
    out.append((start, text[start:cut].strip()))
    return cut


@cache
def _splitter(max_chars: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        separators=CHINESE_SEPARATORS,
        keep_separator="end",
        chunk_size=max_chars,
        chunk_overlap=0,
        strip_whitespace=True,
    )


def _split_sentences(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, str]]:
    out = []
    cursor = start
    for piece in _splitter(max_chars).split_text(text[start:end]):
        found = text.find(piece, cursor, end)
        offset = found if found >= 0 else cursor
        out.append((offset, piece))
        cursor = offset + len(piece)
    return out
