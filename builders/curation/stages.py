"""The curation stages every build runs before writing: validate -> quality -> PII/safety -> dedup.

Builders call `curation_steps(kind, settings)` and pass the steps to `finish_build`.
(The curation work itself is being built in issue 4; until it lands this returns no steps.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.pipeline import Step


class CurationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quality: bool = True
    pii: bool = True
    pii_action: Literal["redact", "drop"] = "redact"
    safety: bool = True
    dedup: bool = True
    dedup_threshold: float = 0.8
    decontaminate: list[Path] = Field(default_factory=list)


def curation_steps(kind: str, settings: CurationSettings | None = None) -> list[Step]:
    settings = settings or CurationSettings()
    return []
