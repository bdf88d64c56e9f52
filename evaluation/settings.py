"""What one `medmill eval` run is asked to do (validated once, written into results.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TASKS = ("mcq", "generation", "ppl", "rm", "judge")
COLUMN_KEYS = ("question", "options", "answer", "category", "type")


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["mcq", "generation", "ppl", "rm", "judge"]
    models: list[str] = Field(min_length=1)
    data: list[str] = Field(min_length=1)
    out: Path
    general: list[str] = Field(default_factory=list)  # ppl: general-domain text shown beside the domain text
    device: str = "auto"  # auto (cuda when present), cpu, cuda, cuda:1, ...
    batch_size: int = Field(8, ge=1)
    bf16: bool = False
    template: str | None = None  # chat template for checkpoints that carry none
    split: str | None = None  # eval split of dataset dirs (default: test, else validation)
    max_items: int | None = Field(None, ge=1)  # first N items per data source (smoke runs)
    # mcq
    scoring: Literal["loglik", "generate"] = "loglik"
    continuation: Literal["letter", "option"] = "letter"
    length_norm: bool = True
    columns: dict[str, str] = Field(default_factory=dict)
    train_dirs: list[str] = Field(default_factory=list)
    # generation / judge / mcq generate
    max_new_tokens: int = Field(256, ge=1)
    grounding_threshold: float = Field(0.5, gt=0, le=1)
    judge_prompt: str = "eval_judge"
    # ppl
    max_length: int = Field(1024, ge=8)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(COLUMN_KEYS))
        if unknown:
            raise ValueError(f"unknown column key(s) {unknown}; use {', '.join(COLUMN_KEYS)}")
        return value

    @model_validator(mode="after")
    def _task_needs(self) -> EvalSettings:
        if self.task == "judge" and len(self.models) > 2:
            raise ValueError("judge compares two models (or one model with the reference answers)")
        if len(set(self.models)) < len(self.models):
            raise ValueError("the same --model is given twice")
        if len(set(self.data + self.general)) < len(self.data) + len(self.general):
            raise ValueError("the same --data / --general source is given twice")
        if self.general and self.task != "ppl":
            raise ValueError("--general is for --task ppl")
        return self


def parse_columns(items: list[str]) -> dict[str, str]:
    """`--column question=题干` pairs -> {"question": "题干"}."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, name = item.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise ValueError(f"--column expects KEY=COLUMN (keys: {', '.join(COLUMN_KEYS)}), got {item!r}")
        out[key.strip()] = name.strip()
    return out
