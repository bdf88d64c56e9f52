"""Typed configuration of build-pt: document cutting, normalisation, repeated-paragraph and
running-text thresholds, token counting, mixing (on top of BuildConfig's inputs, out, seed, splits,
licences, curation)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medmill.builders.core.config import BuildConfig
from medmill.builders.curation.text_quality import RunningTextConfig
from medmill.builders.pretrain.documents import DocUnit
from medmill.builders.text.clean import CleanOptions


class TextQualitySettings(BaseModel):
    """Running-text rules (builders/curation/text_quality.py); 0 turns a rule off."""

    model_config = ConfigDict(extra="forbid")

    min_cjk_share: float = Field(0.2, ge=0.0, le=1.0, description="Least share of CJK among letters (0 = off; use 0 for English corpora).")
    max_symbol_share: float = Field(0.2, ge=0.0, le=1.0, description="Most share of symbols (0 = off).")
    max_digit_share: float = Field(0.3, ge=0.0, le=1.0, description="Most share of digits (0 = off).")
    max_dup_line_share: float = Field(0.3, ge=0.0, le=1.0, description="Most share of repeated lines (0 = off).")
    min_mean_line_chars: float = Field(8.0, ge=0.0, description="Least mean line length (0 = off).")

    def rules(self) -> RunningTextConfig:
        return RunningTextConfig(**self.model_dump())


class PretrainConfig(BuildConfig):
    """build-pt from texts: INPUTs are files, folders and dataset dirs."""

    literature: list[Path] = Field(default_factory=list, description="Those of the inputs that are literature files: title + abstract + conclusion per paper.")
    include: list[str] = Field(default_factory=list, description="Glob of files to read inside directories.")
    exclude: list[str] = Field(default_factory=list, description="Glob of files to skip.")
    text_field: str | None = Field(None, description="Text field of JSON/JSONL records (default: text/content/正文/内容).")
    clean: CleanOptions = Field(default_factory=lambda: CleanOptions(citations="strip"))
    doc_unit: DocUnit = Field("section", description="One document per file, section or paragraph.")
    max_doc_chars: int = Field(4000, ge=50, description="Longest document; longer ones are cut at paragraph, then sentence ends.")
    min_doc_chars: int = Field(50, ge=1, description="Shortest document kept (smaller sections/paragraphs join the next one).")
    t2s: bool = Field(False, description="Convert Traditional to Simplified Chinese (OpenCC).")
    tokenizer: Path | None = Field(None, description="Local Hugging Face tokenizer dir for token counts (default: an estimate from characters).")
    boilerplate_min_docs: int = Field(5, ge=0, description="Remove paragraphs found in at least this many documents (0 = off).")
    boilerplate_min_chars: int = Field(8, ge=1, description="Shorter paragraphs (letters and digits) are never counted as boilerplate.")
    text_quality: TextQualitySettings = Field(default_factory=TextQualitySettings)
    seed: int = Field(42, description="Seed of mixing and splits.")
    val_size: float = Field(0.02, ge=0.0, lt=1.0, description="Share of documents in the validation split (grouped by file and section).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of documents in the test split.")

    @model_validator(mode="after")
    def _doc_sizes(self) -> PretrainConfig:
        if self.min_doc_chars > self.max_doc_chars:
            raise ValueError(f"--min-doc-chars {self.min_doc_chars} is above --max-doc-chars {self.max_doc_chars}")
        return self


class MixConfig(BuildConfig):
    """build-pt --mix: INPUTs are the pretrain dirs named in the spec, with their shares."""

    shares: dict[str, float] = Field(description="Token share per input dir (normalised to sum 1).")
    total_tokens: int | None = Field(None, gt=0, description="Total tokens of the mixture (default: the most no source exceeds --max-epochs for).")
    max_epochs: float = Field(3.0, gt=0.0, description="Most epochs (repeats) of any source.")  # MedicalGPT's maintainer: <= 3
    tokenizer: Path | None = Field(None, description="Local Hugging Face tokenizer dir for token counts (default: an estimate from characters).")
    val_size: float = Field(0.02, ge=0.0, lt=1.0, description="Share of documents in the validation split (copies stay with their original).")

    @model_validator(mode="after")
    def _shares_match_inputs(self) -> MixConfig:
        if sorted(self.shares) != sorted(str(p) for p in self.inputs):
            raise ValueError("every mixed dir needs a share and every share a dir")
        return self
