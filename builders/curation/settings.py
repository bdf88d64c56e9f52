"""What curation does in a build or a `medmill filter` / `medmill dedup` run: one typed settings object.

Builders receive it ready-made (the CLI decorator `curation_options` fills it from flags), so every
build command exposes the same curation flags with the same defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medmill.schemas.errors import MedmillError

PII_TYPES = ("PHONE", "ID_CARD", "EMAIL", "IP", "URL", "BANK_CARD", "PATIENT_ID")


class CurationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # stages on/off (validate re-checks records made in memory; rows read from disk are checked on read)
    validate_records: bool = True
    quality: bool = True
    pii: bool = True
    pii_action: Literal["redact", "drop"] = "redact"
    safety: bool = True
    dedup: bool = True
    dedup_threshold: float = Field(0.6, gt=0.0, le=1.0)
    dedup_fact_guard: bool = True
    decontaminate: list[Path] = Field(default_factory=list)

    # quality
    min_chars: int = Field(2, ge=0, description="shortest answer / text kept (characters, whitespace excluded)")
    max_chars: int = Field(50_000, ge=1, description="longest answer / text kept")
    min_cjk_share: float = Field(0.0, ge=0.0, le=1.0, description="least share of CJK among letters (0 = off)")
    strip_boilerplate: bool = True

    # PII
    pii_types: list[str] = Field(default_factory=lambda: list(PII_TYPES))

    # safety
    lexicons: list[Path] = Field(default_factory=list, description="extra lexicon files (yaml/txt)")
    safety_flag_only: bool = False

    # near-duplicate removal
    dedup_shingle: Literal["char", "word"] = "char"
    dedup_ngram: int = Field(0, ge=0, description="0 = the default for the shingle unit")
    dedup_num_perm: int = Field(128, ge=16, le=1024)
    dedup_fields: list[str] = Field(default_factory=list, description="empty = per-kind default")
    dedup_index: Path | None = None

    # decontamination
    decontam_ngram: int = Field(13, ge=4)
    decontam_field: str | None = None

    @model_validator(mode="after")
    def _length_bounds(self) -> CurationSettings:
        if self.min_chars > self.max_chars:  # would silently drop every record
            raise ValueError(f"--min-chars {self.min_chars} is above --max-chars {self.max_chars}")
        return self


def curation_settings(**values: object) -> CurationSettings:
    """CurationSettings from command-line values; a bad value is a one-line error naming its flag."""
    try:
        return CurationSettings(**values)  # type: ignore[arg-type]
    except ValidationError as e:
        err = e.errors()[0]
        flag = "--" + "-".join(str(x) for x in err["loc"]).replace("_", "-") if err["loc"] else "option"
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            raise MedmillError(msg) from None
        raise MedmillError(f"{flag}: {msg}, got {err.get('input')!r}") from None
