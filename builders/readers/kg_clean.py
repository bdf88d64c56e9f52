"""Cleaning of knowledge-graph values: what every KG reader applies before a value reaches a builder.

Scraped KGs carry noise (QASystem symptom lists hold people's names and items cut with "..."), so each
value is trimmed, checked and deduplicated here, and every dropped value is counted by reason: a KG-QA
dataset must be able to say how much of its source it threw away and why.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# A value cut off by a scraper: ends with an ellipsis (ASCII or CJK), possibly before a closing bracket.
_TRUNCATED = re.compile(r"(\.\.\.|…|。。。)\s*[)）\]】]?$")
_WHITESPACE = re.compile(r"[ \t\u3000\xa0]+")


def _is_only_digits_or_punct(value: str) -> bool:
    """True for "12", "—", "1.", "(3)": nothing a question could be about. A rate such as "85%"
    (cMeKG 发病率, 治愈率) is a fact, not noise."""
    if any(ch.isdigit() for ch in value) and any(ch in "%％‰" for ch in value):
        return False
    for ch in value:
        cat = unicodedata.category(ch)
        if not (cat.startswith("N") or cat.startswith("P") or cat.startswith("S") or ch.isspace()):
            return False
    return True


def normalise_text(value: str) -> str:
    """Trim, unify runs of spaces (incl. full-width) to one, strip each line; keep paragraph breaks."""
    lines = [_WHITESPACE.sub(" ", line).strip() for line in value.replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line)


# The most common Chinese surnames (about 85% of the population): a dictionary word jieba tags as a
# person name only counts as one when it starts with one of them (阴虚, 麻木 are tagged `nr` too).
COMMON_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)


class PersonNameFilter:
    """Spots values that are people's names (doctors' names scraped into QASystem symptom lists).

    Uses jieba's dictionary tags without its HMM (the HMM costs ~30 ms a value, the dictionary
    ~0.03 ms). A name is a value that is one dictionary word tagged `nr` (person name) starting with a
    common surname (李娜), or that the dictionary can only split into single characters, with a name tag
    among them, that start with a common surname (闫鹏辉 -> 闫/nr 鹏/nr 辉/nr) or are two proper-noun/name
    characters (毓卓 -> 毓/nz 卓/nr). Heuristic by nature: names made of characters jieba does
    not tag as names (张伟) pass; a symptom word that looks like a name (苏醒) is lost; the counter says
    how many values went. jieba loads its dictionary once (~1 s), so only readers that need the filter
    create it.
    """

    def __init__(self) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)
        self._cut = jieba.posseg.lcut
        self._seen: dict[str, bool] = {}

    def __call__(self, value: str) -> bool:
        if not 2 <= len(value) <= 4:
            return False
        known = self._seen.get(value)
        if known is None:
            known = self._seen[value] = self._is_name(value)
        return known

    def _is_name(self, value: str) -> bool:
        tokens = self._cut(value, HMM=False)
        if len(tokens) == 1:
            return tokens[0].flag == "nr" and value[0] in COMMON_SURNAMES
        if not all(len(t.word) == 1 for t in tokens) or not any(t.flag == "nr" for t in tokens):
            return False
        # surname + given name (闫鹏辉, 王某), or a bare given name: a proper-noun character + a name one (毓卓)
        return value[0] in COMMON_SURNAMES or (
            len(tokens) == 2 and tokens[0].flag in ("nz", "nr", "g") and tokens[1].flag == "nr"
        )


def _flatten(values: Iterable[object]) -> Iterable[object]:
    """Values with nested lists opened up: `["乏力", ["咳嗽", "发热"]]` holds three values, not two."""
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flatten(value)
        else:
            yield value


@dataclass
class ValueCleaner:
    """Cleans values and counts what it drops in `counters` (keys `dropped_values.<reason>`)."""

    counters: Counter = field(default_factory=Counter)
    name_filter: PersonNameFilter | None = None  # created on first use (jieba's dictionary takes ~1 s)

    def drop(self, reason: str, n: int = 1) -> None:
        self.counters[f"dropped_values.{reason}"] += n

    def clean_list(self, values: Iterable[object], *, entity: str, names: bool = False) -> list[str]:
        """Clean one relation's values: trim, drop empty / truncated / digits-or-punctuation-only /
        the entity itself / (optionally) people's names, dedupe keeping first order."""
        kept: list[str] = []
        seen: set[str] = set()
        for raw in _flatten(values):
            if raw is None:
                self.drop("empty")
                continue
            if isinstance(raw, (dict, list)):
                self.drop("not_text")
                continue
            value = normalise_text(str(raw)).replace("\n", " ")
            if not value:
                self.drop("empty")
            elif _TRUNCATED.search(value):
                self.drop("truncated")
            elif _is_only_digits_or_punct(value):
                self.drop("digits_or_punctuation")
            elif value == entity:
                self.drop("self_reference")
            elif names and self._is_name(value):
                self.drop("person_name")
            elif value in seen:
                self.drop("duplicate")
            else:
                seen.add(value)
                kept.append(value)
        return kept

    def _is_name(self, value: str) -> bool:
        if self.name_filter is None:
            self.name_filter = PersonNameFilter()
        return self.name_filter(value)

    def clean_text(self, raw: object) -> str | None:
        """Clean a free-text attribute (简介, 病因 ...); None (counted) when nothing usable is left."""
        if raw is None or isinstance(raw, (dict, list)):
            self.drop("empty" if raw is None else "not_text")
            return None
        text = normalise_text(str(raw))
        if not text:
            self.drop("empty")
            return None
        if _is_only_digits_or_punct(text) and not any(ch.isdigit() for ch in text):
            self.drop("digits_or_punctuation")
            return None
        return text
