"""Meta-talk lists (builders/text/meta_talk.yaml), loaded once: AI self-reference, talk about the
source text, and the words a KG scenario answer must not contain."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class MetaTalk:
    version: str
    ai_self: tuple[str, ...]
    source_talk: tuple[str, ...]
    scenario_words: tuple[str, ...]

    @property
    def answer_pattern(self) -> re.Pattern[str]:
        """AI self-reference or talk about the source: what an LLM builder's answer must not hold."""
        return re.compile("|".join(self.ai_self + self.source_talk), re.IGNORECASE)

    def scenario_word(self, text: str) -> str | None:
        """The first scenario word in `text` (case-insensitive), else None."""
        low = text.lower()
        return next((w for w in self.scenario_words if w.lower() in low), None)


@lru_cache(maxsize=1)
def meta_talk() -> MetaTalk:
    data = yaml.safe_load((resources.files("medmill.builders.text") / "meta_talk.yaml").read_text(encoding="utf-8"))
    return MetaTalk(
        version=str(data["version"]),
        ai_self=tuple(data["ai_self"]),
        source_talk=tuple(data["source_talk"]),
        scenario_words=tuple(data["scenario_words"]),
    )
