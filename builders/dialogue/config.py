"""What `medmill build-dialogue` may be asked to do, as typed settings (the manifest's params)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEPARTMENT_TEMPLATE = "现在你是一名{department}医生，请根据患者的问题给出专业的建议。"


class CleanConfig(BaseModel):
    """The cleaning every conversation goes through before curation."""

    model_config = ConfigDict(extra="forbid")

    strip_templates: bool = Field(True, description="take templated openers / sign-offs off doctor turns")
    min_chars: int = Field(2, ge=1, description="shortest user or assistant turn kept (characters, whitespace excluded)")
    max_chars: int = Field(16_000, ge=1, description="longest conversation kept (characters, whitespace excluded)")
    language: Literal["auto", "zh", "en", "any"] = Field(
        "auto", description="expected language; auto = each input file's majority language"
    )
    lexicon: Path | None = Field(None, description="your own openers / sign-offs / placeholders YAML")

    @model_validator(mode="after")
    def _bounds(self) -> CleanConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"--min-chars {self.min_chars} is above --max-chars {self.max_chars}")
        return self


class PromptConfig(BaseModel):
    """Which system prompt a record gets: the corpus's own, one for all, or one per department."""

    model_config = ConfigDict(extra="forbid")

    system_prompt: str | None = None
    department_prompt: bool = False
    department_template: str = DEPARTMENT_TEMPLATE

    @model_validator(mode="after")
    def _one_kind(self) -> PromptConfig:
        if self.system_prompt is not None and self.department_prompt:
            raise ValueError("use --system-prompt or --department-prompt, not both")
        if self.system_prompt is not None and not self.system_prompt.strip():
            raise ValueError("--system-prompt is empty")
        if "{department}" not in self.department_template:
            raise ValueError("the department template needs a {department} slot")
        return self


class ReadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[
        "auto", "toyhom", "alpaca", "icliniq", "sharegpt", "openai", "bentsao", "medicalgpt-reward", "dataset"
    ] = "auto"
    answer_field: str = Field("answer_icliniq", description="iCliniq answer that becomes the doctor turn")
    merge_prefixes: bool = Field(True, description="keep each conversation once, in its longest form")

    @model_validator(mode="after")
    def _answer(self) -> ReadConfig:
        short = {"icliniq": "answer_icliniq", "chatgpt": "answer_chatgpt", "chatdoctor": "answer_chatdoctor"}
        self.answer_field = short.get(self.answer_field, self.answer_field)
        return self
