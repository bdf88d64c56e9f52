"""What a run found: the sources read and one summary per model and data source (results.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.evaluation.settings import EvalSettings
from medmill.version import __version__


@dataclass
class SourceInfo:
    data: str
    read: str
    role: str = "domain"  # ppl: domain | general
    items: int = 0
    unusable: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class EvalResult:
    settings: EvalSettings
    sources: list[SourceInfo]
    results: dict[str, dict[str, dict[str, Any]]]  # model -> data -> summary
    overlap: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: Path = Path(".")
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "medmill_version": __version__,
            "task": self.settings.task,
            "settings": json.loads(self.settings.model_dump_json()),
            "sources": [vars(s) for s in self.sources],
            "results": self.results,
            "overlap": self.overlap,
            "seconds": round(self.seconds, 2),
        }
