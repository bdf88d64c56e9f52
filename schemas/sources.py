"""Typed raw sources: what readers produce and builders consume."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .records import Message


class SourceRef(BaseModel):
    """Where in an input file a raw source was read (file path and 1-based line, or byte offset)."""

    model_config = ConfigDict(extra="forbid")

    file: str
    line: int | None = None
    offset: int | None = None


class KGEntity(BaseModel):
    """One entity of a knowledge graph.

    `attributes` hold free text (简介, 病因, 预防 ...); `relations` hold lists of short values
    (症状 -> [发热, 咳嗽]). Keys are Chinese relation labels after reader mapping.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    relations: dict[str, list[str]] = Field(default_factory=dict)
    ref: SourceRef | None = None


class Triple(BaseModel):
    model_config = ConfigDict(extra="forbid")

    head: str = Field(min_length=1)
    relation: str = Field(min_length=1)
    tail: str = Field(min_length=1)
    ref: SourceRef | None = None


class TextChunk(BaseModel):
    """A piece of a guideline or textbook, with the heading path it sits under."""

    model_config = ConfigDict(extra="forbid")

    id: str
    text: str = Field(min_length=1)
    file: str
    offset: int = 0
    headings: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class LiteratureRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    conclusion: str = Field(min_length=1)
    abstract: str | None = None
    year: int | None = None
    journal: str | None = None
    doi: str | None = None
    keywords: list[str] = Field(default_factory=list)
    ref: SourceRef | None = None


class Dialogue(BaseModel):
    """A doctor-patient conversation as real message lists (never flattened <user>:/<bot>: strings)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    messages: list[Message]
    meta: dict[str, Any] = Field(default_factory=dict)
    ref: SourceRef | None = None
