"""Typed configuration of build-pt: inputs, document cutting, normalisation, boilerplate and
running-text thresholds, token counting, mixing, curation, splits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.text_quality import RunningTextConfig
from medmill.builders.pretrain.documents import DocUnit
from medmill.builders.text.clean import CleanOptions

BUILDER = "pretrain"
BUILDER_VERSION = "1"


class TextQualitySettings(BaseModel):
    """Running-text rules (builders/curation/text_quality.py); 0 turns a rule off."""

    model_config = ConfigDict(extra="forbid")

    min_cjk_share: float = Field(0.2, ge=0.0, le=1.0)
    max_symbol_share: float = Field(0.2, ge=0.0, le=1.0)
    max_digit_share: float = Field(0.3, ge=0.0, le=1.0)
    max_dup_line_share: float = Field(0.3, ge=0.0, le=1.0)
    min_mean_line_chars: float = Field(8.0, ge=0.0)

    def rules(self) -> RunningTextConfig:
        return RunningTextConfig(**self.model_dump())


class MixSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str  # DIR=SHARE,DIR=SHARE
    total_tokens: int | None = Field(None, gt=0)
    max_epochs: float = Field(3.0, gt=0.0)  # MedicalGPT's maintainer: <= 3 epochs of domain text


class PretrainBuild(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Path] = Field(default_factory=list)
    out: Path
    literature: list[Path] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    text_field: str | None = None
    clean: CleanOptions = Field(default_factory=lambda: CleanOptions(citations="strip"))
    doc_unit: DocUnit = "section"
    max_doc_chars: int = Field(4000, ge=50)
    min_doc_chars: int = Field(50, ge=1)
    t2s: bool = False
    tokenizer: Path | None = None
    boilerplate_min_docs: int = Field(5, ge=0)
    boilerplate_min_chars: int = Field(8, ge=1)
    text_quality: TextQualitySettings = Field(default_factory=TextQualitySettings)
    mix: MixSettings | None = None
    curation: CurationSettings = Field(default_factory=CurationSettings)
    seed: int = 42
    val_size: float = Field(0.02, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> PretrainBuild:
        if self.min_doc_chars > self.max_doc_chars:
            raise ValueError(f"--min-doc-chars {self.min_doc_chars} is above --max-doc-chars {self.max_doc_chars}")
        if self.mix is None and not self.inputs and not self.literature:
            raise ValueError("give INPUT files or directories (or --literature FILE, or --mix DIR=SHARE,...)")
        if self.mix is not None and (self.inputs or self.literature):
            raise ValueError("--mix mixes existing pretrain dirs; build them first, then mix them without INPUTs")
        return self
