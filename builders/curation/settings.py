"""What curation does in a build or a `medmill filter` / `medmill dedup` run: one typed settings object.

Builders receive it ready-made. Its fields are documented once here; the CLI generates the curation
flags of every build command and of `medmill filter` from them (medmill/commands/_curation_options.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PII_TYPES = ("PHONE", "ID_CARD", "EMAIL", "IP", "URL", "BANK_CARD", "PATIENT_ID")


def _opt(default: Any = ..., help: str = "", flag: str | None = None, comma: bool = False, **kw: Any) -> Any:
    """A field documented once: `help` is its description and the help of its command-line flag;
    `flag` overrides the flag's spelling (default `--name`, `--name/--no-name` for switches);
    `comma` makes a list field one comma-separated flag value."""
    extra: dict[str, Any] = {}
    if flag:
        extra["flag"] = flag
    if comma:
        extra["comma"] = True
    return Field(default, description=help, json_schema_extra=extra or None, **kw)


class CurationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # stages on/off (validate re-checks records made in memory; rows read from disk are checked on read)
    validate_records: bool = True
    quality: bool = _opt(True, "Quality rules (length, repetition, garble, boilerplate).")
    pii: bool = _opt(True, "Detect PII (phones, ID numbers, emails, ...).")
    pii_action: Literal["redact", "drop"] = _opt("redact", "redact: typed placeholders like <PHONE>; drop: reject the record.")
    safety: bool = _opt(True, "Safety lexicon (categories drop or flag).")
    dedup: bool = _opt(True, "Exact and MinHash near-duplicate removal.")
    dedup_threshold: float = _opt(
        0.6, "Jaccard similarity at or above which records are near-duplicate candidates (kept when they state different facts).",
        gt=0.0, le=1.0)
    dedup_fact_guard: bool = _opt(
        True, "Keep near-identical records that differ in entity names, KG values, medical terms or numbers.",
        flag="--dedup-fact-guard/--no-dedup-fact-guard")
    dedup_max_compare: int = _opt(
        64, "Exact comparisons per near-duplicate candidate: the N best-ranked kept records sharing an LSH bucket with it "
            "(most shared buckets first).", ge=1)
    dedup_bucket_depth: int = _opt(
        16, "Candidates of a record: the first N records of each LSH bucket it is in. On crowded buckets (templated "
            "corpora) more finds more duplicates and costs more time.", ge=1)
    decontaminate: list[Path] = _opt(
        default_factory=list, help="Eval set (dataset dir, JSON/JSONL/CSV) whose long n-grams must not appear; repeatable.")

    # quality
    min_chars: int = _opt(2, "Shortest answer kept (characters).", ge=0)
    max_chars: int = _opt(50_000, "Longest answer kept (characters).", ge=1)
    min_cjk_share: float = _opt(0.0, "Least share of CJK among letters (0 = off).", ge=0.0, le=1.0)
    strip_boilerplate: bool = _opt(True, "Strip greeting/sign-off boilerplate from answers.",
                                   flag="--strip-boilerplate/--keep-boilerplate")

    # PII
    pii_types: list[str] = _opt(default_factory=lambda: list(PII_TYPES), comma=True,
                                help=f"Comma-separated subset of {','.join(PII_TYPES)} (default: all).")

    # safety
    lexicons: list[Path] = _opt(default_factory=list, flag="--safety-lexicon",
                                help="Extra safety lexicon file (yaml/txt); repeatable.")
    safety_flag_only: bool = _opt(False, "Flag every category instead of dropping.", flag="--safety-flag-only")

    # near-duplicate removal
    dedup_shingle: Literal["char", "word"] = "char"
    dedup_ngram: int = Field(0, ge=0, description="0 = the default for the shingle unit")
    dedup_num_perm: int = Field(128, ge=16, le=1024)
    dedup_fields: list[str] = Field(default_factory=list, description="empty = per-kind default")
    dedup_index: Path | None = _opt(None, "Persisted dedup index: dedup against earlier runs and add this one.")

    # decontamination
    decontam_ngram: int = _opt(13, "Shared character n-gram length that counts as contamination.", ge=4)
    decontam_field: str | None = _opt(None, "Eval field/column to read (default: all text fields).")
    decontam_skip_bad_lines: bool = _opt(
        False, "Skip (and count) --decontaminate lines that cannot be read instead of stopping.",
        flag="--skip-bad-eval-lines")

    @model_validator(mode="after")
    def _length_bounds(self) -> CurationSettings:
        if self.min_chars > self.max_chars:  # would silently drop every record
            raise ValueError(f"--min-chars {self.min_chars} is above --max-chars {self.max_chars}")
        unknown = sorted(set(self.pii_types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"--pii-types: unknown {', '.join(unknown)}; known: {', '.join(PII_TYPES)}")
        return self
