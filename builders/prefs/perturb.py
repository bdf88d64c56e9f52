"""The corrupt strategy: a rejected answer made from the chosen one by a perturbation that makes it worse
in a known way (the list and the inserted text live in prompts/prefs_perturbations.yaml).

No LLM: pairs are cheap, reproducible, and each says in `meta` what is wrong with its rejected side.
KG-QA answers carry their relations and values in `meta`, so their facts can be swapped with the same
relation's values of other entities; any other answer still gets truncation, unsafe advice,
overconfidence and dose changes.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from medmill.builders.readers.prompt_items import PromptItem
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import normalise_for_compare

PERTURBATIONS = ("fact_swap", "truncate", "unsafe_advice", "overconfident", "dose_change")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])")
_LIST_SEPARATOR = r"(、|，|,|以及|及|和|与|或)"


@dataclass(frozen=True)
class Fact:
    """One KG relation of the entity an answer is about, with the values the answer states."""

    relation: str
    values: tuple[str, ...]
    entity: str | None = None


@dataclass
class Perturbed:
    text: str
    name: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lexicon:
    """prompts/prefs_perturbations.yaml, typed."""

    id: str
    version: str
    see_doctor_patterns: list[str]
    unsafe_general: list[str]
    unsafe_dosing: list[str]
    medicine_markers: list[str]
    hedges: dict[str, str]
    guarantees: list[str]
    dose_units: list[str]
    dose_context: list[str]
    dose_factor: float
    truncate_keep: float
    max_fact_chars: int

    @classmethod
    def load(cls) -> Lexicon:
        text = resources.files("medmill.prompts").joinpath("prefs_perturbations.yaml").read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        return cls(**{k: (str(v) if k == "version" else v) for k, v in data.items()})

    @property
    def ref(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version}


def facts_from_meta(meta: dict[str, Any]) -> list[Fact]:
    """The KG facts a record's `meta` names.

    Accepted shapes: build-kg-qa's `values: {relation: [values]}` (its reverse questions list diseases
    under "entities", which then swap with other diseases), `relations: {relation: [values]}`,
    `facts: [{relation, values|value|tail, entity?|head?}]`, `relation: str` with `values: [..]`;
    the entity comes from `entity` / `entity_name` / `head`.
    """
    entity = next((str(meta[k]) for k in ("entity", "entity_name", "head") if isinstance(meta.get(k), str)), None)
    facts: list[Fact] = []

    def add(relation: Any, values: Any, who: str | None) -> None:
        if isinstance(values, str):
            values = [values]
        if not isinstance(relation, str) or not isinstance(values, list):
            return
        clean = tuple(v.strip() for v in values if isinstance(v, str) and v.strip())
        if relation and clean:
            facts.append(Fact(relation, clean, who))

    raw_facts = meta.get("facts")
    if isinstance(raw_facts, list):
        for f in raw_facts:
            if isinstance(f, dict):
                who = f.get("entity") or f.get("head") or entity
                add(f.get("relation"), f.get("values", f.get("value", f.get("tail"))), who if isinstance(who, str) else entity)
    relations = meta.get("relations")
    if isinstance(relations, dict):
        for relation, values in relations.items():
            add(relation, values, entity)
    values = meta.get("values")
    if isinstance(meta.get("relation"), str):
        add(meta["relation"], values, entity)
    elif isinstance(values, dict):
        for relation, listed in values.items():
            add(relation, listed, entity)
    return facts


class FactPool:
    """Every value each relation takes across the input, by entity: where swapped-in values come from."""

    def __init__(self, items: Iterable[PromptItem], max_chars: int):
        self.max_chars = max_chars
        self._values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for item in items:
            self.add(item)

    def add(self, item: PromptItem) -> None:
        """One more item's facts (a streamed build fills the pool as it reads)."""
        for fact in facts_from_meta(item.meta):
            for value in fact.values:
                if len(value) <= self.max_chars:
                    self._values[fact.relation][value].add(fact.entity or "")

    def alternatives(self, fact: Fact, text: str) -> list[str]:
        """Values of the same relation held by other entities, absent from the answer and its facts."""
        own = set(fact.values)
        found = []
        for value, owners in self._values.get(fact.relation, {}).items():
            if value in own or value in text or any(value in v or v in value for v in own):
                continue
            if owners - {fact.entity or ""}:
                found.append(value)
        return sorted(found)


class Corrupter:
    """Picks, per answer, the least-used applicable perturbation (ties broken by a seeded draw)."""

    def __init__(self, items: list[PromptItem], enabled: Iterable[str] = PERTURBATIONS, seed: int = 42):
        unknown = sorted(set(enabled) - set(PERTURBATIONS))
        if unknown:
            raise MedmillError(f"unknown perturbation(s) {unknown}; choose from {', '.join(PERTURBATIONS)}")
        self.lexicon = Lexicon.load()
        self.enabled = [p for p in PERTURBATIONS if p in set(enabled)]
        if not self.enabled:
            raise MedmillError("no perturbation enabled")
        self.seed = seed
        self.pool = FactPool(items, self.lexicon.max_fact_chars)
        self.used: Counter = Counter()
        self._see_doctor = [re.compile(p) for p in self.lexicon.see_doctor_patterns]
        units = "|".join(sorted(map(re.escape, self.lexicon.dose_units), key=len, reverse=True))
        self._dose = re.compile(rf"(\d+(?:\.\d+)?)\s*({units})(?!\s*/\s*(?!kg|d(?![A-Za-z])|日|次))")
        self._fns: dict[str, Callable[[str, list[Fact], random.Random], Perturbed | None]] = {
            "fact_swap": self.fact_swap,
            "truncate": self.truncate,
            "unsafe_advice": self.unsafe_advice,
            "overconfident": self.overconfident,
            "dose_change": self.dose_change,
        }

    def corrupt(self, item: PromptItem, answer: str) -> Perturbed | None:
        """A worse version of `answer`, or None when no enabled perturbation applies."""
        options = self.options(item, answer)
        name = self.choose(item.key, [o.name for o in options])
        return next((o for o in options if o.name == name), None)

    def options(self, item: PromptItem, answer: str) -> list[Perturbed]:
        """Every enabled perturbation that applies to `answer`, in `PERTURBATIONS` order."""
        facts = facts_from_meta(item.meta)
        return [p for name in self.enabled if (p := self.apply(name, item, answer, facts)) is not None]

    def apply(self, name: str, item: PromptItem, answer: str, facts: list[Fact] | None = None) -> Perturbed | None:
        """Perturbation `name` of `answer` (None: it does not apply, or leaves the text as it was); the
        same result whenever it is asked, so a streamed build may find and make it in two passes."""
        facts = facts_from_meta(item.meta) if facts is None else facts
        result = self._fns[name](answer, facts, random.Random(f"{self.seed}:{item.key}:{name}"))
        if result and normalise_for_compare(result.text) and normalise_for_compare(result.text) != normalise_for_compare(answer):
            return result
        return None

    def choose(self, key: str, names: list[str]) -> str | None:
        """Of the perturbations `names` that apply to the item with `key`, the least used so far (ties
        broken by a draw seeded with the key), counted as used; None when none applies. Depends on every
        earlier choice: a build makes its choices in item order, in one process."""
        if not names:
            return None
        least = min(self.used[n] for n in names)
        choice = random.Random(f"{self.seed}:{key}").choice([n for n in names if self.used[n] == least])
        self.used[choice] += 1
        return choice

    # ---- the perturbations -------------------------------------------------------------------

    def fact_swap(self, text: str, facts: list[Fact], rng: random.Random) -> Perturbed | None:
        swapped: dict[str, dict[str, str]] = {}
        placeholders: dict[str, str] = {}
        out = text
        # entity names are masked first, so a value inside a name (甲状腺功能 in 甲状腺功能减退症) stays put
        for name in sorted({f.entity for f in facts if f.entity}, key=_longest_first):
            marker = f"\x00{len(placeholders)}\x00"
            if name in out:
                placeholders[marker] = name
                out = out.replace(name, marker)
        for fact in facts:
            present = sorted({v for v in fact.values if len(v) <= self.lexicon.max_fact_chars and v in out}, key=_longest_first)
            choices = self.pool.alternatives(fact, text)
            rng.shuffle(choices)
            for value in present:
                if not choices:
                    break
                new = choices.pop()
                marker = f"\x00{len(placeholders)}\x00"
                placeholders[marker] = new
                out = out.replace(value, marker)
                swapped.setdefault(fact.relation, {})[value] = new
        if not swapped:
            return None
        for marker, original in placeholders.items():
            out = out.replace(marker, original)
        return Perturbed(out, "fact_swap", {"swapped": swapped})

    def truncate(self, text: str, facts: list[Fact], rng: random.Random) -> Perturbed | None:
        values = [v for f in facts for v in f.values if v in text]
        pieces = _pieces(text)
        n_real = sum(1 for p in pieces if p.strip())
        if values:
            kept = [p for p in pieces if not any(v in p for v in values)]
            if 0 < sum(1 for p in kept if p.strip()) < n_real:
                return Perturbed("".join(kept).strip(), "truncate", {"dropped": "sentences with KG values"})
            shortened = _drop_list_tail(text, values)
            if shortened:
                return Perturbed(shortened, "truncate", {"dropped": "all but the first KG value"})
        limit = int(len(text) * self.lexicon.truncate_keep)
        kept_text = ""
        for p in pieces:
            if len(kept_text) + len(p) > limit:
                break
            kept_text += p
        if not kept_text.strip():
            first = next((p for p in pieces if p.strip()), "")
            cut = first.rfind("，", 0, limit)
            kept_text = first[:cut] if cut > 0 else ""
        kept_text = kept_text.strip().rstrip("，,、；;")
        if not kept_text:
            return None
        return Perturbed(kept_text, "truncate", {"kept_chars": len(kept_text), "of_chars": len(text)})

    def unsafe_advice(self, text: str, facts: list[Fact], rng: random.Random) -> Perturbed | None:
        lex = self.lexicon
        phrases = list(lex.unsafe_general)
        if any(m in text for m in lex.medicine_markers):
            phrases = list(lex.unsafe_dosing) + phrases
        phrase = rng.choice(phrases)
        pieces = _pieces(text)
        for i, p in enumerate(pieces):
            if p.strip() and any(pattern.search(p) for pattern in self._see_doctor):
                pieces[i] = phrase + ("\n" if p.endswith("\n") else "")
                return Perturbed("".join(pieces).strip(), "unsafe_advice", {"inserted": phrase, "replaced": p.strip()})
        return Perturbed(_insert(text, phrase, rng), "unsafe_advice", {"inserted": phrase, "replaced": None})

    def overconfident(self, text: str, facts: list[Fact], rng: random.Random) -> Perturbed | None:
        out = text
        hardened = {}
        for hedge, sure in self.lexicon.hedges.items():
            if hedge in out:
                out = out.replace(hedge, sure)
                hardened[hedge] = sure
        claim = rng.choice(self.lexicon.guarantees)
        return Perturbed(_insert(out, claim, rng), "overconfident", {"hardened": hardened, "inserted": claim})

    def dose_change(self, text: str, facts: list[Fact], rng: random.Random) -> Perturbed | None:
        changes: list[dict[str, str]] = []

        def scale(m: re.Match) -> str:
            value = float(m.group(1)) * self.lexicon.dose_factor
            new = f"{value:g}{m.group(2)}"
            changes.append({"from": m.group(0), "to": new})
            return new

        out = "".join(
            self._dose.sub(scale, p) if any(w in p for w in self.lexicon.dose_context) else p for p in _pieces(text)
        )
        if not changes:
            return None
        return Perturbed(out, "dose_change", {"changed": changes, "factor": self.lexicon.dose_factor})


def _longest_first(value: str) -> tuple[int, str]:
    """Sort key: longer strings first (a value inside a longer one is replaced after it), then by text, so the
    order never depends on set iteration (str hashes differ between processes)."""
    return (-len(value), value)


def _pieces(text: str) -> list[str]:
    """`text` cut after each sentence end (。！？；, newline); joining the pieces gives `text` back."""
    return [p for p in _SENTENCE_END.split(text) if p]


def _insert(text: str, sentence: str, rng: random.Random) -> str:
    """`sentence` after the first sentence or at the end (varied, so position alone gives nothing away)."""
    body = text.rstrip()
    if not re.search(r"[。！？!?.]$", body):
        body += "。"
    pieces = _pieces(body)
    real = [i for i, p in enumerate(pieces) if p.strip()]
    if len(real) < 2 or rng.random() < 0.5 or not re.search(r"[。！？!?]\s*$", pieces[real[0]]):
        return body + sentence
    cut = real[0] + 1
    return "".join(pieces[:cut]) + sentence + "".join(pieces[cut:])


def _drop_list_tail(text: str, values: list[str]) -> str | None:
    """Keep only the first of the KG values listed in `text` (e.g. 症状有A、B和C -> 症状有A)."""
    ordered = sorted(set(values), key=lambda v: (text.find(v), v))
    if len(ordered) < 2:
        return None
    out = text
    for value in ordered[1:]:
        out = re.sub(_LIST_SEPARATOR + re.escape(value), "", out, count=1)
    return out if out != text else None
