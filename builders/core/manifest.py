"""manifest.json: what a dataset dir holds and how it was made (no secrets, ever)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class InputFile(BaseModel):
    path: str
    bytes: int
    sha256: str


class ShardInfo(BaseModel):
    """One parquet shard as written: readers refuse a dir whose shards no longer match."""

    file: str
    bytes: int
    sha256: str


class SplitInfo(BaseModel):
    records: int
    files: list[str]
    shards: list[ShardInfo] = Field(default_factory=list)


class Manifest(BaseModel):
    tool: str = "medmill"
    version: str
    kind: str
    builder: str
    command: str
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    inputs: list[InputFile] = Field(default_factory=list)
    splits: dict[str, SplitInfo] = Field(default_factory=dict)
    records_total: int = 0
    rejects_total: int = 0
    rejects_by_reason: dict[str, int] = Field(default_factory=dict)
    counters: dict[str, int] = Field(default_factory=dict)
    curation: dict[str, Any] = Field(default_factory=dict)
    # the builder's own tables (Collector.stats): per-input-file figures, repeated paragraphs, a mixture
    stats: dict[str, Any] = Field(default_factory=dict)
    prompts: list[dict[str, str]] = Field(default_factory=list)
    llm: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    complete: bool = True
