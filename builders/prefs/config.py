"""build-prefs: its settings, and adding a pair (or a reject) to the build's Collector."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from medmill.builders.core.collect import Collector
from medmill.builders.core.config import BuildConfig
from medmill.builders.llm.types import LLMSettings
from medmill.builders.prefs.perturb import PERTURBATIONS
from medmill.builders.readers.prompt_items import PromptItem
from medmill.schemas import Message, PreferenceRecord, RejectRow

BUILDER = "prefs"  # the command name without "build-"
BUILDER_VERSION = "1"
Strategy = Literal["corrupt", "judge", "reference"]


class PrefsConfig(BuildConfig):
    """Everything a build-prefs run depends on (the CLI fills it from flags or a config file)."""

    strategy: Strategy = "corrupt"
    question_field: str | None = None
    answer_field: str | None = None
    perturbations: list[str] = Field(default_factory=lambda: list(PERTURBATIONS))
    candidates: list[LLMSettings] = Field(default_factory=list)
    samples: int = Field(1, ge=1, le=16, description="answers per candidate model and prompt")
    judge: LLMSettings | None = None
    min_margin: float = Field(1.0, ge=0.0)
    pairwise_check: bool = False
    include_reference: bool = True
    seed: int = Field(42, description="Seed of perturbation choice and splits.")
    val_size: float = Field(0.05, ge=0.0, lt=1.0, description="Share of records in the validation split (group-aware).")
    source_licenses: dict[str, str] = Field(
        default_factory=dict, description="FILE=LICENSE of an input; repeatable (dataset dirs default to their manifest's).",
        json_schema_extra={"flag": "--source-license"},
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N distinct prompts.")


def add_pair(out: Collector, item: PromptItem, chosen: str, rejected: str, meta: dict[str, Any], stage: str) -> None:
    """Add a validated preference record to `out`, or a reject saying why the pair is not valid."""
    prompt = item.prompt
    chosen_m = [Message(role="assistant", content=chosen)]
    rejected_m = [Message(role="assistant", content=rejected)]
    meta = {**meta, "origin": item.origin}
    if item.meta:
        meta["input_meta"] = item.meta
    try:
        record = PreferenceRecord(
            id=PreferenceRecord.make_id(prompt, chosen_m, rejected_m),
            prompt=prompt,
            chosen=chosen_m,
            rejected=rejected_m,
            source=item.source.model_copy(update={"builder": BUILDER, "builder_version": BUILDER_VERSION}),
            meta=meta,
        )
    except ValidationError as e:
        reject_item(out, stage, "invalid_pair", item, "; ".join(err["msg"] for err in e.errors()),
                    {"chosen": chosen, "rejected": rejected})
        return
    out.add(record)
    out.counters[f"pairs.{meta['strategy']}"] += 1


def reject_item(out: Collector, stage: str, reason: str, item: PromptItem, message: str, extra: Any = None) -> None:
    raw = {"prompt": [m.model_dump() for m in item.prompt]}
    if extra is not None:
        raw["detail"] = extra
    out.reject(RejectRow(stage=stage, reason=reason, message=message, source=item.source, raw=raw))
