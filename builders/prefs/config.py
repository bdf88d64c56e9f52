"""build-prefs: its settings and the outcome every strategy fills."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medmill.builders.curation.settings import CurationSettings
from medmill.builders.llm.types import LLMSettings
from medmill.builders.prefs.perturb import PERTURBATIONS
from medmill.builders.readers.prompt_items import PromptItem
from medmill.schemas import Message, PreferenceRecord, RejectRow
from medmill.version import __version__

BUILDER = "build-prefs"
Strategy = Literal["corrupt", "judge", "reference"]


class PrefsConfig(BaseModel):
    """Everything a build-prefs run depends on (the CLI fills it from flags or a config file)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Path]
    out: Path
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
    limit: int | None = Field(None, ge=1)
    seed: int = 42
    val_size: float = 0.05
    test_size: float = 0.0
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    curation: CurationSettings = Field(default_factory=CurationSettings)


@dataclass
class Outcome:
    """What a strategy produced: records, rejects, counters and what the LLMs did."""

    records: list[PreferenceRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    llm: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, str]] = field(default_factory=list)

    def pair(self, item: PromptItem, chosen: str, rejected: str, meta: dict[str, Any], stage: str) -> None:
        """Add a validated record, or a reject saying why the pair is not valid."""
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
                source=item.source.model_copy(update={"builder": BUILDER, "builder_version": __version__}),
                meta=meta,
            )
        except ValidationError as e:
            self.reject(stage, "invalid_pair", item, "; ".join(err["msg"] for err in e.errors()), {"chosen": chosen, "rejected": rejected})
            return
        self.records.append(record)
        self.counters[f"pairs.{meta['strategy']}"] += 1

    def reject(self, stage: str, reason: str, item: PromptItem, message: str, extra: Any = None) -> None:
        raw = {"prompt": [m.model_dump() for m in item.prompt]}
        if extra is not None:
            raw["detail"] = extra
        self.rejects.append(RejectRow(stage=stage, reason=reason, message=message, source=item.source, raw=raw))
