"""Split cleaned documents into chunks that end on sentence boundaries and carry their heading path.

Small sections are packed together up to the chunk size (their heading lines stay in the text and
the chunk's path is what they share); a section larger than the chunk size is cut by
langchain-text-splitters' RecursiveCharacterTextSplitter with Chinese separators (paragraph, line,
。！？；, ，). Size is counted in characters or in tokens of a local tokenizer. Chunk ids hash the
document name, the offset and the text, so they are stable across runs and machines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medmill.builders.text.sections import Section, split_sections
from medmill.schemas import TextChunk
from medmill.schemas.errors import MedmillError

CHINESE_SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", "!", "?", ";", "，", ",", " ", ""]


class ChunkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunk_size: int = Field(2000, gt=0)
    chunk_overlap: int = Field(200, ge=0)
    unit: Literal["chars", "tokens"] = "chars"
    tokenizer: Path | None = None  # a local tokenizer directory, for unit="tokens"
    min_chunk_chars: int = Field(50, ge=1)  # smaller pieces join a neighbour when the result still fits

    @model_validator(mode="after")
    def _check(self) -> ChunkSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size}); "
                "lower --chunk-overlap"
            )
        if self.unit == "tokens" and self.tokenizer is None:
            raise ValueError("--chunk-unit tokens needs a local tokenizer directory (--tokenizer DIR)")
        return self


def chunk_id(name: str, offset: int, text: str) -> str:
    digest = hashlib.sha256(f"{name}\x00{offset}\x00{text}".encode()).hexdigest()
    return f"c{digest[:16]}"


class Chunker:
    """Reusable splitter for one set of settings (loads the tokenizer once)."""

    def __init__(self, settings: ChunkSettings):
        self.settings = settings
        self.length: Callable[[str], int] = len
        if settings.unit == "tokens":
            self.length = _token_counter(settings.tokenizer)
        self.splitter = self._splitter(settings.chunk_size)

    def _splitter(self, size: int):
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        return RecursiveCharacterTextSplitter(
            separators=CHINESE_SEPARATORS,
            keep_separator="end",
            chunk_size=size,
            chunk_overlap=min(self.settings.chunk_overlap, size - 1),
            length_function=self.length,
            strip_whitespace=True,
        )

    def chunk(self, name: str, text: str, meta: dict | None = None) -> list[TextChunk]:
        """Chunks of one document (`text` already cleaned); offsets are character offsets in `text`."""
        pieces: list[tuple[int, str, list[str]]] = []
        group: list[Section] = []
        sections = split_sections(text)
        major = _major_ranks(sections)
        size = self.settings.chunk_size
        for section in sections:
            body = text[section.start : section.end].strip()
            if not body:
                continue
            big = self.length(body) > size
            if group:
                too_long = self.length(text[group[0].start : section.end].strip()) > size
                new_chapter = section.rank in major and not self._is_lead_in(text, group, section)
                if big or too_long or new_chapter:
                    # headings with no text of their own that introduce `section` go with it
                    keep = _introducing_headings(text, group, section)
                    pieces.extend(self._pack(text, group[: len(group) - keep]))
                    group = group[len(group) - keep :]
                    if group and not big and self.length(text[group[0].start : section.end].strip()) > size:
                        pieces.extend(self._pack(text, group))
                        group = []
            if big:
                # what is left of the group is bare headings: a small piece, merged forward below if it fits
                pieces.extend(self._pack(text, group))
                group = []
                pieces.extend(self._split(text, section))
                continue
            group.append(section)
        pieces.extend(self._pack(text, group))
        pieces = self._merge_small(pieces, text)
        return [
            TextChunk(
                id=chunk_id(name, off, body),
                text=body,
                file=name,
                offset=off,
                headings=heads,
                meta=dict(meta or {}),
            )
            for off, body, heads in pieces
        ]

    def _is_lead_in(self, text: str, group: list[Section], section: Section) -> bool:
        """Only parent headings (and a line) so far: keep them with the section they introduce."""
        small = len(text[group[0].start : group[-1].end].strip()) < self.settings.min_chunk_chars
        return small and all(_is_prefix(g.headings, section.headings) for g in group)

    def _pack(self, text: str, group: list[Section]) -> list[tuple[int, str, list[str]]]:
        if not group:
            return []
        raw = text[group[0].start : group[-1].end]
        body = raw.strip()
        offset = group[0].start + (len(raw) - len(raw.lstrip()))
        return [(offset, body, _common_prefix([s.headings for s in group]))]

    def _split(self, text: str, section: Section) -> list[tuple[int, str, list[str]]]:
        """Split a long section's body; its heading line stays at the head of the first piece."""
        body_start = section.start
        if section.rank is not None:
            eol = text.find("\n", section.start, section.end)
            body_start = section.end if eol < 0 else eol + 1
        heading_len = self.length(text[section.start : body_start].strip())
        splitter = self.splitter
        if heading_len:  # room for the heading line and the line break(s) after it
            splitter = self._splitter(max(1, self.settings.chunk_size - heading_len - 2))
        out = []
        cursor = body_start
        previous = body_start - 1
        for piece in splitter.split_text(text[body_start : section.end]):
            # pieces start strictly after the previous one: a repeated sentence must not map to its earlier copy
            found = text.find(piece, max(body_start, cursor - len(piece), previous + 1), section.end)
            offset = found if found >= 0 else cursor
            out.append((offset, piece, list(section.headings)))
            cursor = offset + len(piece)
            previous = offset
        if out and heading_len:
            offset, piece, heads = out[0]
            out[0] = (section.start, text[section.start : offset + len(piece)], heads)
        elif heading_len:  # a heading longer than the chunk size, with nothing under it
            out = [(section.start, text[section.start : section.end].strip(), list(section.headings))]
        return out

    def _merge_small(
        self, pieces: list[tuple[int, str, list[str]]], text: str
    ) -> list[tuple[int, str, list[str]]]:
        """A tiny piece (a lone heading, a short tail) joins the next piece, else the previous one, if it fits."""
        out: list[tuple[int, str, list[str]]] = []
        pending: tuple[int, str, list[str]] | None = None
        for piece in pieces:
            if pending is not None:
                merged = self._join(text, pending, piece) if _is_prefix(pending[2], piece[2]) else None
                if merged is not None:
                    piece = merged
                else:
                    self._append_or_merge_back(out, pending, text)
                pending = None
            if len(piece[1]) < self.settings.min_chunk_chars:
                pending = piece
                continue
            out.append(piece)
        if pending is not None:
            self._append_or_merge_back(out, pending, text)
        return out

    def _join(self, text: str, first: tuple[int, str, list[str]], second: tuple[int, str, list[str]]):
        if second[0] < first[0] + len(first[1]):
            return None  # overlapping pieces of a split section: keep them apart
        merged = text[first[0] : second[0] + len(second[1])]
        if self.length(merged) > self.settings.chunk_size:
            return None
        return (first[0], merged, _common_prefix([first[2], second[2]]))

    def _append_or_merge_back(self, out: list, piece: tuple[int, str, list[str]], text: str) -> None:
        merged = self._join(text, out[-1], piece) if out else None
        if merged is not None:
            out[-1] = merged
        else:
            out.append(piece)


def _major_ranks(sections: list[Section]) -> set[int]:
    """The two highest heading levels of a document (章/节, # and ##, 3 and 3.1): chunks do not span them."""
    return set(sorted({s.rank for s in sections if s.rank is not None})[:2])


def _introducing_headings(text: str, group: list[Section], section: Section) -> int:
    """How many sections at the end of `group` are bare heading lines above `section`."""
    n = 0
    for g in reversed(group):
        bare = g.rank is not None and "\n" not in text[g.start : g.end].strip()
        if not (bare and _is_prefix(g.headings, section.headings)):
            break
        n += 1
    return n


def _is_prefix(short: list[str], long: list[str]) -> bool:
    return long[: len(short)] == short


def _common_prefix(paths: list[list[str]]) -> list[str]:
    if not paths:
        return []
    prefix = list(paths[0])
    for p in paths[1:]:
        n = 0
        while n < min(len(prefix), len(p)) and prefix[n] == p[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def _token_counter(path: Path | None) -> Callable[[str], int]:
    """Token count of a local tokenizer: its tokenizer.json through `tokenizers` when present (fast to
    load), else transformers' AutoTokenizer (sentencepiece-only tokenizers)."""
    if path is None or not Path(path).is_dir():
        raise MedmillError(f"--tokenizer {path}: not a local tokenizer directory")
    try:
        if (Path(path) / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
            return lambda s: len(fast.encode(s, add_special_tokens=False).ids)
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return lambda s: len(slow.encode(s, add_special_tokens=False))
    except (OSError, ValueError, Exception) as e:  # tokenizers raises its own Exception subclass
        raise MedmillError(f"cannot load tokenizer from {path}: {str(e).splitlines()[0]}") from None
