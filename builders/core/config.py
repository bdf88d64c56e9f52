"""`BuildConfig`: what every build is configured with, declared once (inputs, out, seed, split sizes,
licences, curation, limits). A builder's config subclasses it (or `LLMBuildConfig`) and adds its own
fields; field descriptions are the help text of the matching command-line flags (`@build_options` in
medmill/commands/_build_options.py makes the flags of seed, splits, licences and limit from them; a
subclass redeclares a field where its default or description differs, and `json_schema_extra={"flag":
"--limit-chunks"}` spells a flag otherwise than `--field-name`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Path] = Field(min_length=1, description="Input files or directories.")
    out: Path = Field(description="Output dataset dir.")
    seed: int = Field(42, description="Seed of sampling and splits.")
    val_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the validation split (group-aware).")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records in the test split (group-aware).")
    license: str = Field("other", description="License id written to the dataset card.")
    source_licenses: dict[str, str] = Field(
        default_factory=dict, description="FILE=LICENSE of an input; repeatable.", json_schema_extra={"flag": "--source-license"}
    )
    curation: CurationSettings = Field(default_factory=CurationSettings)
    limit: int | None = Field(None, ge=1, description="Use only the first N input items (trial runs).")

    @model_validator(mode="after")
    def _split_sizes(self) -> BuildConfig:
        if self.val_size + self.test_size >= 1.0:
            raise ValueError("--val-size plus --test-size must be below 1")
        return self


class LLMBuildConfig(BuildConfig):
    """A build that calls an LLM: the engine settings (the manifest records them under `llm`, never keys)."""

    llm: LLMSettings = Field(default_factory=LLMSettings)
