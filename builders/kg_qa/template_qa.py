"""KG -> SFT question/answer records, template mode (no LLM, no network).

For every entity: one question per relation and text attribute (a paraphrase template picked with the
seed), questions combining two relations (科室 + 检查, 症状 + 治疗), then questions across the whole graph
from symptoms back to the diseases that list them. Answers are composed only from KG values, and each
record's `meta` says which relations and values it states:

    meta = {"builder": "kg-qa", "mode": "template", "qtype": "relation" | "attribute" | "combined" |
            "reverse_single" | "reverse_multi", "template": "<relation>:q<i>a<j>", "templates": "id@version",
            "entity": <subject>, "entity_type": ..., "relations": [KG labels used],
            "values": {label: [values stated in the answer]},   # reverse: {"entities": [...], "检查": [...]}
            "canonical": {label: template relation the label maps to, or None},
            "question_values": {label: [values in the question]},  # reverse questions only
            "truncated": bool, "by_value": true when a yes/no attribute (医保: 是/否) is said in words}

`build_template_records(entities, templates, config)` is the reusable entry point (a Collector of
records, rejects and counters); a build runs the same as `TemplateStep` (a map step over batches of
entities) and `ReverseStep` (a global step: it needs every entity); `entity_source` gives the provenance other KG builders should use too.
A streamed build finds the questions across the graph in the driver (`reverse_groups`: every entity is
in memory anyway, a question is a few strings) and hands them to `TemplateStep` as `ReverseGroup`s
after the entities, so the workers make their records and they come last, as `ReverseStep` puts them.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.collect import Collector
from medmill.builders.core.steps import GlobalStep, MapStep, StepResult
from medmill.builders.kg_qa import BUILDER, BUILDER_VERSION
from medmill.builders.kg_qa.templates import KGQATemplates
from medmill.schemas import Message, RejectRow, SFTRecord, Source
from medmill.schemas.sources import KGEntity

STAGE = "build"
_LONG_VALUE = re.compile(r"[，,；;。：:]")
_DOUBLE_STOP = re.compile(r"([。！？；])[。，；]+")


class TemplateQAConfig(BaseModel):
    """Settings of template mode (dumped into the manifest's params)."""

    model_config = ConfigDict(extra="forbid")

    per_entity: int | None = Field(None, ge=1)
    seed: int = 42
    system_prompt: str | None = None
    combined: bool = True
    reverse: bool = True


@dataclass
class _Item:
    """A question/answer before it becomes a record."""

    question: str
    answer: str
    meta: dict[str, Any]
    group: str
    source: KGEntity
    ref: str


def join_values(values: Sequence[str]) -> str:
    """"A、B和C" for short values; long values (with their own punctuation) are joined with "；"."""
    values = list(values)
    if any(len(v) > 20 or _LONG_VALUE.search(v) for v in values):
        return "；".join(values)
    if len(values) <= 1:
        return "".join(values)
    return "、".join(values[:-1]) + "和" + values[-1]


def tidy(text: str) -> str:
    """Remove the doubled stops a template adds after a value that already ends a sentence, and end
    an answer whose last value had no full stop with one."""
    text = _DOUBLE_STOP.sub(r"\1", text.strip())
    if text and text[-1] not in "。！？!?…":
        text = text.rstrip("；;，,：:") + "。"
    return text


def entity_source(entity: KGEntity, builder: str = BUILDER, version: str = BUILDER_VERSION,
                  *, ref: str | None = None, group: str | None = None) -> Source:
    """Provenance of a record about `entity`: its file and line, `group` = "entity:<name>"."""
    return Source(
        file=entity.ref.file if entity.ref else None,
        line=entity.ref.line if entity.ref else None,
        ref=ref or entity.name,
        group=group or f"entity:{entity.name}",
        builder=builder,
        builder_version=version,
    )


def cut_text(text: str, limit: int) -> str | None:
    """`text` if short enough, else its longest prefix ending a paragraph or sentence; None if none."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind("\n"), head.rfind("。"), head.rfind("！"), head.rfind("？"))
    if cut < limit // 4:
        return None
    return head[: cut + 1].rstrip()


class _Builder:
    def __init__(self, templates: KGQATemplates, config: TemplateQAConfig, out: Collector | _Batch) -> None:
        self.t = templates
        self.config = config
        self.out = out
        self.counters: Counter = out.counters
        self.tref = f"{templates.id}@{templates.version}"

    # ---- helpers -------------------------------------------------------------------------------
    def _rng(self, key: str) -> random.Random:
        """One generator per subject, so adding an entity never changes another entity's records."""
        return random.Random(f"{self.config.seed}\x00{key}")

    def _cap(self, values: list[str], limit: int) -> tuple[list[str], str]:
        if len(values) <= limit:
            return values, ""
        self.counters["lists_cut"] += 1
        return values[:limit], self.t.truncation_note.format(total=len(values), shown=limit)

    def _meta(self, entity: KGEntity, qtype: str, template: str, values: dict[str, list[str]],
              truncated: bool, **extra: Any) -> dict[str, Any]:
        meta = {
            "builder": BUILDER,
            "mode": "template",
            "qtype": qtype,
            "template": template,
            "templates": self.tref,
            "entity": entity.name,
            "entity_type": entity.type,
            "relations": list(values),
            "values": values,
            "canonical": {label: self.t.canonical(label) for label in values if label != "entities"},
            "truncated": truncated,
        }
        meta.update(extra)
        if "direction" in extra:  # reverse: the relation walked backwards, plus the checks relation if used
            meta["relations"] = [*extra["question_values"], *(k for k in values if k != "entities")]
        return meta

    # ---- per entity ----------------------------------------------------------------------------
    def entity_items(self, entity: KGEntity) -> list[_Item]:
        """One item per relation (labels sharing a template, 临床表现 + 症状, are asked once with their
        values merged), one per text attribute whose question is not asked yet, then combined ones."""
        rng = self._rng(f"entity:{entity.name}")
        groups: dict[str, list[tuple[str, list[str]]]] = {}
        for label, values in entity.relations.items():
            if label in self.t.skip_relations:
                self.counters[f"relations_skipped.{label}"] += 1
                continue
            groups.setdefault(self.t.canonical(label) or f"\x00{label}", []).append((label, values))
        items = [self._relation_item(entity, parts, rng) for parts in groups.values()]
        for label, text in entity.attributes.items():
            if label in self.t.skip_relations:
                self.counters[f"relations_skipped.{label}"] += 1
                continue
            key = self.t.canonical(label) or f"\x00{label}"
            if key in groups:  # 简介 and 概述 would ask "什么是X？" twice with two answers
                self.counters["attributes_already_asked"] += 1
                asked = groups[key][0][0]
                self.reject(entity, "attribute_already_asked",
                            f"{entity.name}: attribute {label} asks the same question as {asked}, which is kept",
                            {"attribute": label, "text": text[:2000]})
                continue
            groups[key] = [(label, [text])]
            item = self._attribute_item(entity, label, text, rng)
            if item is not None:
                items.append(item)
        if self.config.combined:
            items.extend(self._combined_items(entity, rng))
        return items

    def _relation_item(self, entity: KGEntity, parts: list[tuple[str, list[str]]], rng: random.Random) -> _Item:
        label = parts[0][0]
        values = list(dict.fromkeys(v for _, vs in parts for v in vs))
        if len(parts) > 1:
            self.counters["relations_merged_by_template"] += len(parts) - 1
        canon = self.t.canonical(label)
        rel = self.t.relations.get(canon) if canon else None
        if rel is not None and rel.text:
            return self._text_answer(entity, label, canon, join_values(values), rng,
                                     meta_values={lb: vs for lb, vs in parts})
        shown, note = self._cap(values, self.t.max_values)
        if rel is None:
            self.counters[f"relations_without_template.{label}"] += 1
            qs, ans, tname = self.t.generic.list.questions, self.t.generic.list.answers, "generic"
        else:
            qs, ans, tname = rel.questions, rel.answers, canon
        qi, ai = rng.randrange(len(qs)), rng.randrange(len(ans))
        fill = {"entity": entity.name, "relation": label, "values": join_values(shown), "note": note}
        used = {lb: [v for v in vs if v in shown] for lb, vs in parts}
        return _Item(
            qs[qi].format_map(fill),
            tidy(ans[ai].format_map(fill)),
            self._meta(entity, "relation", f"{tname}:q{qi}a{ai}", {lb: vs for lb, vs in used.items() if vs},
                       bool(note)),
            f"entity:{entity.name}", entity, entity.name,
        )

    def _attribute_item(self, entity: KGEntity, label: str, text: str, rng: random.Random) -> _Item | None:
        canon = self.t.canonical(label)
        short = cut_text(text, self.t.max_text_chars)
        if short is None:
            self.counters["text_attributes_too_long"] += 1
            self.reject(entity, "text_too_long",
                        f"{entity.name}: attribute {label} has {len(text)} characters (> {self.t.max_text_chars}) "
                        "and no sentence or paragraph end to cut at", {"attribute": label, "text": text[:2000]})
            return None
        if short != text:
            self.counters["text_attributes_shortened"] += 1
        return self._text_answer(entity, label, canon, short, rng, meta_values={label: [short]},
                                 truncated=short != text)

    def _text_answer(self, entity: KGEntity, label: str, canon: str | None, text: str, rng: random.Random,
                     *, meta_values: dict[str, list[str]], truncated: bool = False) -> _Item:
        rel = self.t.relations.get(canon) if canon else None
        if rel is None or not rel.text:
            self.counters[f"relations_without_template.{label}"] += 1
            qs, ans, tname = self.t.generic.text.questions, self.t.generic.text.answers, "generic_text"
        else:
            qs, tname = rel.questions, canon
            ans = [rel.answers_by_value[text]] if text in rel.answers_by_value else rel.answers
            if not ans:  # a by-value attribute (是/否) holding another value: say it as generic text
                self.counters[f"unexpected_values.{label}"] += 1
                qs, ans, tname = self.t.generic.text.questions, self.t.generic.text.answers, "generic_text"
        qi, ai = rng.randrange(len(qs)), rng.randrange(len(ans))
        fill = {"entity": entity.name, "relation": label, "text": text}
        answer = ans[ai]
        by_value = text in (rel.answers_by_value if rel is not None and tname == canon else {})
        if text.startswith("约"):  # "治愈率为{text}" + "约40%" reads "治愈率约40%", not "为约40%"
            answer = answer.replace("为{text}", "{text}")
        return _Item(
            qs[qi].format_map(fill),
            tidy(answer.format_map(fill)),
            self._meta(entity, "attribute", f"{tname}:q{qi}a{ai}", meta_values, truncated,
                       **({"by_value": True} if by_value else {})),
            f"entity:{entity.name}", entity, entity.name,
        )

    def _combined_items(self, entity: KGEntity, rng: random.Random) -> list[_Item]:
        by_canon: dict[str, list[tuple[str, list[str]]]] = {}
        for label, values in entity.relations.items():
            canon = self.t.canonical(label)
            if canon and label not in self.t.skip_relations:
                by_canon.setdefault(canon, []).append((label, values))
        items = []
        for combo in self.t.combined:
            if not all(r in by_canon for r in combo.relations):
                continue
            fill: dict[str, str] = {"entity": entity.name}
            used: dict[str, list[str]] = {}
            cut = False
            for r in combo.relations:
                parts = by_canon[r]
                merged = list(dict.fromkeys(v for _, vs in parts for v in vs))
                shown, note = self._cap(merged, self.t.max_values)
                cut = cut or bool(note)
                fill[r] = join_values(shown) + note
                used.update({lb: [v for v in vs if v in shown] for lb, vs in parts})
            qi, ai = rng.randrange(len(combo.questions)), rng.randrange(len(combo.answers))
            items.append(_Item(
                combo.questions[qi].format_map(fill),
                tidy(combo.answers[ai].format_map(fill)),
                self._meta(entity, "combined", f"{combo.id}:q{qi}a{ai}", {lb: vs for lb, vs in used.items() if vs},
                           cut),
                f"entity:{entity.name}", entity, entity.name,
            ))
        return items

    # ---- across the graph ----------------------------------------------------------------------
    def reverse_items(self, entities: Sequence[KGEntity]) -> list[_Item]:
        rev = self.t.reverse
        if rev is None or not self.config.reverse:
            return []
        # symptom -> entities listing it, as a name-keyed dict (insertion order = input order)
        index: dict[str, dict[str, KGEntity]] = {}
        checks: dict[str, list[str]] = {}
        symptoms_of: dict[str, list[str]] = {}
        for e in entities:
            for label, values in e.relations.items():
                canon = self.t.canonical(label)
                if canon == rev.relation:
                    for v in values:
                        index.setdefault(v, {}).setdefault(e.name, e)
                        if v not in symptoms_of.setdefault(e.name, []):
                            symptoms_of[e.name].append(v)
                elif canon == rev.checks_relation:
                    checks.setdefault(e.name, []).extend(c for c in values if c not in checks.get(e.name, []))
        items: list[_Item] = []
        for symptom, owned in index.items():
            owners = list(owned.values())
            if len(owners) < rev.min_entities:
                self.counters["reverse_symptoms_too_few_entities"] += 1
                continue
            rng = self._rng(f"symptom:{symptom}")
            names, note = self._cap([e.name for e in owners], rev.max_entities)
            qs, ans = rev.single.questions, rev.single.answers
            qi, ai = rng.randrange(len(qs)), rng.randrange(len(ans))
            fill = {"symptom": symptom, "entities": join_values(names), "note": note}
            meta = self._meta(owners[0], "reverse_single", f"reverse_single:q{qi}a{ai}", {"entities": names},
                              bool(note), question_values={rev.relation: [symptom]}, direction="reverse")
            meta["entity"], meta["entity_type"] = symptom, "症状"
            items.append(_Item(qs[qi].format_map(fill), tidy(ans[ai].format_map(fill)), meta,
                               f"symptom:{symptom}", owners[0], symptom))
        if rev.multi is not None:
            items.extend(self._multi_items(entities, index, checks, symptoms_of))
        return items

    def _multi_items(self, entities: Sequence[KGEntity], index: dict[str, dict[str, KGEntity]],
                     checks: dict[str, list[str]], symptoms_of: dict[str, list[str]]) -> list[_Item]:
        """One multi-symptom question per entity at most: a symptom combination it shares with others."""
        rev = self.t.reverse
        assert rev is not None and rev.multi is not None
        k = rev.multi.symptoms
        used: set[tuple[str, ...]] = set()
        items: list[_Item] = []
        for e in entities:
            symptoms = symptoms_of.get(e.name, [])[:12]
            if len(symptoms) < k:
                continue
            rng = self._rng(f"multi:{e.name}")
            candidates = []
            for combo in combinations(symptoms, k):
                key = tuple(sorted(combo))
                if key in used:
                    continue
                names = [n for n in index[combo[0]] if all(n in index[s] for s in combo[1:])]
                if len(names) >= rev.min_entities:
                    candidates.append((key, names))
            if not candidates:
                continue
            key, matching = candidates[rng.randrange(len(candidates))]
            used.add(key)
            names, note = self._cap(matching, rev.max_entities)
            shown_checks = _round_robin([checks.get(n, []) for n in names], rev.max_checks)
            ans_pool = rev.multi.answers if shown_checks else rev.multi.answers_without_checks
            qi, ai = rng.randrange(len(rev.multi.questions)), rng.randrange(len(ans_pool))
            asked = [s for s in symptoms if s in key]  # in the entity's order, as a patient lists them
            fill = {"symptoms": join_values(asked), "entities": join_values(names), "note": note,
                    "checks": join_values(shown_checks)}
            values: dict[str, list[str]] = {"entities": names}
            if shown_checks:
                values[rev.checks_relation] = shown_checks
            meta = self._meta(e, "reverse_multi", f"reverse_multi:q{qi}a{ai}", values, bool(note),
                              question_values={rev.relation: asked}, direction="reverse")
            meta["entity"], meta["entity_type"] = "+".join(key), "症状"
            items.append(_Item(rev.multi.questions[qi].format_map(fill), tidy(ans_pool[ai].format_map(fill)),
                               meta, "symptoms:" + "+".join(key), e, "+".join(key)))
        return items

    # ---- records -------------------------------------------------------------------------------
    def record(self, item: _Item) -> SFTRecord | None:
        messages = []
        if self.config.system_prompt:
            messages.append(Message(role="system", content=self.config.system_prompt))
        try:
            messages += [Message(role="user", content=item.question), Message(role="assistant", content=item.answer)]
            return SFTRecord(
                id=SFTRecord.make_id(messages),
                messages=messages,
                source=entity_source(item.source, ref=item.ref, group=item.group),
                meta=item.meta,
            )
        except ValueError as e:
            self.reject(item.source, "invalid_record", str(e).splitlines()[0],
                        {"question": item.question, "answer": item.answer})
            return None

    def reject(self, entity: KGEntity, reason: str, message: str, raw: Any = None) -> None:
        self.counters[f"rejected.{reason}"] += 1
        self.out.reject(RejectRow(stage=STAGE, reason=reason, message=message, source=entity_source(entity), raw=raw))

    def cap(self, group: str, items: list[_Item]) -> list[_Item]:
        limit = self.config.per_entity
        if limit is None or len(items) <= limit:
            return items
        self.counters["records_over_per_entity_cap"] += len(items) - limit
        keep = sorted(self._rng(f"cap:{group}").sample(range(len(items)), limit))
        return [items[i] for i in keep]


def _round_robin(lists: list[list[str]], limit: int) -> list[str]:
    """First item of each list, then the second of each ..., without repeats, up to `limit`: so every
    candidate disease contributes its main check instead of the first disease filling the list."""
    out: list[str] = []
    for depth in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if depth < len(items) and items[depth] not in out and len(out) < limit:
                out.append(items[depth])
    return out


def protected_terms(entities: Sequence[KGEntity], longest: int = 30) -> frozenset[str]:
    """The facts a KG build read: entity names and relation values (short ones; long texts are not
    names). Dedup never merges two records that differ in one of them (1型糖尿病 vs 2型糖尿病)."""
    terms = {e.name for e in entities}
    terms |= {v for e in entities for values in e.relations.values() for v in values if len(v) <= longest}
    return frozenset(t for t in terms if len(t) >= 2)


def build_template_records(
    entities: Sequence[KGEntity], templates: KGQATemplates, config: TemplateQAConfig | None = None,
    *, out: Collector | None = None,
) -> Collector:
    """Questions and answers for `entities` into `out` (records in input order), in one call: what the
    build runs as `TemplateStep` over batches of entities, then `ReverseStep`."""
    out = out if out is not None else Collector()
    b = _Builder(templates, config or TemplateQAConfig(), out)
    _emit(b, _entity_groups(b, entities), out)
    _emit(b, _reverse_groups(b, entities), out)
    return out


class _Batch:
    """What a step's `_Builder` writes into: records, rejects and counters of one batch."""

    def __init__(self) -> None:
        self.records: list[SFTRecord] = []
        self.rejects: list[RejectRow] = []
        self.counters: Counter = Counter()

    def add(self, record: SFTRecord) -> None:
        self.records.append(record)

    def reject(self, row: RejectRow) -> None:
        self.rejects.append(row)


class TemplateStep(MapStep):
    """Template generation as a map step: a batch of entities -> their questions (one group per entity,
    capped per entity), rejects and counters; a batch of `ReverseGroup`s (a streamed build's questions
    across the graph) -> their records. Holds the templates and settings."""

    name = "generate"

    def __init__(self, templates: KGQATemplates, config: TemplateQAConfig) -> None:
        self.templates = templates
        self.config = config

    def __call__(self, batch: list[KGEntity]) -> StepResult:
        out = _Batch()
        b = _Builder(self.templates, self.config, out)
        entities = [x for x in batch if not isinstance(x, ReverseGroup)]
        _emit(b, _entity_groups(b, entities), out)
        _emit(b, {g.group: g.items for g in batch if isinstance(g, ReverseGroup)}, out)
        return StepResult(out.records, out.rejects, out.counters)


@dataclass
class ReverseGroup:
    """The questions across the graph of one group (a symptom, a symptom combination), before records."""

    group: str
    items: list[_Item]


def reverse_groups(entities: Sequence[KGEntity], templates: KGQATemplates,
                   config: TemplateQAConfig) -> tuple[list[ReverseGroup], Counter]:
    """What `ReverseStep` asks, as groups for `TemplateStep`, and the counters of finding them (finding
    rejects nothing; making the records may, in the step)."""
    out = _Batch()
    grouped = _reverse_groups(_Builder(templates, config, out), entities)
    return [ReverseGroup(g, items) for g, items in grouped.items()], out.counters


class ReverseStep(GlobalStep):
    """The questions across the graph (symptoms back to the diseases listing them): needs every entity,
    so a global step; appends its records to the entity records it is given."""

    name = "generate_reverse"

    def __init__(self, templates: KGQATemplates, config: TemplateQAConfig, entities: Sequence[KGEntity]) -> None:
        self.templates = templates
        self.config = config
        self.entities = entities

    def __call__(self, batch: list[SFTRecord]) -> StepResult:
        out = _Batch()
        b = _Builder(self.templates, self.config, out)
        _emit(b, _reverse_groups(b, self.entities), out)
        return StepResult(batch + out.records, out.rejects, out.counters)


def _entity_groups(b: _Builder, entities: Sequence[KGEntity]) -> dict[str, list[_Item]]:
    grouped: dict[str, list[_Item]] = {}
    for entity in entities:
        items = b.entity_items(entity)
        if not items:
            b.reject(entity, "no_usable_facts",
                     f"entity {entity.name!r} has no relation or attribute left to ask about",
                     {"relations": sorted(entity.relations), "attributes": sorted(entity.attributes)})
        for item in items:
            grouped.setdefault(item.group, []).append(item)
    return grouped


def _reverse_groups(b: _Builder, entities: Sequence[KGEntity]) -> dict[str, list[_Item]]:
    grouped: dict[str, list[_Item]] = {}
    for item in b.reverse_items(entities):
        grouped.setdefault(item.group, []).append(item)
    return grouped


def _emit(b: _Builder, grouped: dict[str, list[_Item]], out: Collector | _Batch) -> None:
    """Every group's items (capped per group) as records, in group order."""
    for group, items in grouped.items():
        for item in b.cap(group, items):
            rec = b.record(item)
            if rec is not None:
                out.add(rec)
                b.counters[f"records.{item.meta['qtype']}"] += 1
