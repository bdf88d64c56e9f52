"""Single-choice questions from a knowledge graph (no LLM), TCMChat- or CMExam-style.

For an entity and one of its relations, the correct option is one of the entity's values; the
distractors are values of the same relation held by other entities and not by this one (nor
contained in / containing one of its values, so 腹痛 never competes with 上腹痛). Options are shuffled
by a generator seeded by --seed, the entity and the relation. Every rendered record is verified
against the KG before it is kept: the keyed option must be a value of the entity for that relation
and no other option may be; a record that fails is a reject (`answer_key_mismatch`,
`ambiguous_options`, ...).

Record contract (read by `medmill eval --task mcq`): messages [optional system, user = stem + option
lines "A. …", assistant = the answer]; meta `task`="mcq", `question` (the stem), `options` (letter ->
text), `answer` (letter), `category` (the KG relation), plus `entity`, `entity_type`, `style`.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.tasks.common import TaskOutput, chat_record, source
from medmill.schemas import SFTRecord
from medmill.schemas.sources import KGEntity

TASK = "mcq"
LETTERS = "ABCDEFGH"
Style = Literal["tcmchat", "cmexam"]
_OPTION_LINE = re.compile(r"^([A-H])\. (.+)$", re.M)


class MCQConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    options: int = Field(4, ge=2, le=len(LETTERS))
    style: Style = "tcmchat"
    relations: list[str] = Field(default_factory=list)  # empty: every list relation
    per_entity: int | None = Field(None, ge=1)  # at most this many questions per entity
    max_option_chars: int = Field(30, ge=2)  # longer values (注意事项 sentences) make poor options
    seed: int = 42
    system_prompt: str | None = None


# entity -> relation -> the values an answer may be
KGIndex = dict[str, dict[str, set[str]]]


@dataclass
class MCQItem:
    entity: str
    entity_type: str | None
    relation: str
    stem: str
    options: dict[str, str]
    answer: str


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def kg_index(entities: Sequence[KGEntity]) -> KGIndex:
    return {e.name: {rel: {norm(v) for v in values} for rel, values in e.relations.items()} for e in entities}


def conflicts(value: str, own: set[str]) -> bool:
    """A would-be distractor that equals, contains or is contained in one of the entity's values."""
    v = norm(value)
    return any(v == o or v in o or o in v for o in own)


def stem_for(entity: KGEntity, relation: str, style: Style) -> str:
    if style == "cmexam":
        return f"下列属于{entity.name}{relation}的是（　）"
    return f"以下哪一项是{entity.name}的{relation}？"


def option_pools(entities: Sequence[KGEntity], cfg: MCQConfig) -> dict[str, set[str]]:
    """Relation -> every short value any entity holds for it (the distractors are drawn from these)."""
    pools: dict[str, set[str]] = defaultdict(set)
    for e in entities:
        for rel, values in e.relations.items():
            pools[rel].update(v for v in values if len(v) <= cfg.max_option_chars)
    return dict(pools)


def entity_items(e: KGEntity, pools: dict[str, set[str]], cfg: MCQConfig, out: TaskOutput) -> list[MCQItem]:
    """The questions of one entity, distractors from `pools` (`option_pools` of the whole KG)."""
    wanted = set(cfg.relations)
    items: list[MCQItem] = []
    made = 0
    for rel, values in e.relations.items():
        if wanted and rel not in wanted:
            continue
        if cfg.per_entity is not None and made >= cfg.per_entity:
            out.counters["skipped.over_per_entity"] += 1
            continue
        own = {norm(v) for v in values}
        correct = sorted(v for v in values if len(v) <= cfg.max_option_chars)
        if not correct:
            out.counters["skipped.no_short_value"] += 1
            continue
        distractors = sorted(v for v in pools.get(rel, ()) if not conflicts(v, own))
        if len(distractors) < cfg.options - 1:
            out.counters["skipped.too_few_distractors"] += 1
            continue
        rng = random.Random(f"{cfg.seed}\x00{e.name}\x00{rel}")
        picked = [rng.choice(correct), *rng.sample(distractors, cfg.options - 1)]
        rng.shuffle(picked)
        options = {LETTERS[i]: text for i, text in enumerate(picked)}
        answer = next(k for k, v in options.items() if norm(v) in own)
        items.append(MCQItem(e.name, e.type, rel, stem_for(e, rel, cfg.style), options, answer))
        made += 1
    return items


def render(item: MCQItem, values: Sequence[str], cfg: MCQConfig) -> tuple[str, str]:
    """(user, assistant) texts in the chosen style."""
    lines = "\n".join(f"{k}. {v}" for k, v in item.options.items())
    if cfg.style == "cmexam":
        user = f"以下是一道医学单项选择题，请选出唯一正确的答案并给出解析。\n{item.stem}\n{lines}"
        shown = "、".join(values[:12]) + ("等" if len(values) > 12 else "")
        assistant = f"答案：{item.answer}\n解析：{item.entity}的{item.relation}包括{shown}，选项{item.options[item.answer]}正确。"
    else:
        user = f"以下是关于医学知识的单项选择题，请直接给出正确答案的选项。\n{item.stem}\n{lines}"
        assistant = f"{item.answer}. {item.options[item.answer]}"
    return user, assistant


def verify_record(record: SFTRecord, index: KGIndex) -> tuple[str, str] | None:
    """(reason, message) when the record's answer key does not hold in the KG, else None."""
    meta = record.meta
    entity, relation, options, answer = meta.get("entity"), meta.get("category"), meta.get("options") or {}, meta.get("answer")
    values = index.get(entity or "", {}).get(relation or "")
    if not values:
        return "unknown_fact", f"{entity!r} has no relation {relation!r} in the KG"
    if answer not in options:
        return "answer_not_an_option", f"answer {answer!r} is not one of {sorted(options)}"
    if len({norm(v) for v in options.values()}) != len(options):
        return "duplicate_options", "two options have the same text"
    if norm(options[answer]) not in values:
        return "answer_key_mismatch", f"option {answer} ({options[answer]}) is not a {relation} of {entity}"
    also = [k for k, v in options.items() if k != answer and norm(v) in values]
    if also:
        return "ambiguous_options", f"options {also} are also {relation} of {entity}"
    user = next(m.content for m in record.messages if m.role == "user")
    if dict(_OPTION_LINE.findall(user)) != options:
        return "options_not_rendered", "the prompt's option lines differ from meta.options"
    return None


def build_mcq(entities: Sequence[KGEntity], cfg: MCQConfig) -> TaskOutput:
    """Every entity's verified questions (what `MCQStep` does batch by batch, in one call)."""
    step = MCQStep(cfg, option_pools(entities, cfg))
    result = step(list(entities))
    return TaskOutput(result.records, result.rejects, result.counters)


def entity_records(entity: KGEntity, pools: dict[str, set[str]], cfg: MCQConfig, out: TaskOutput) -> None:
    """One entity's questions rendered, each verified against the entity's KG values before it is kept."""
    index = kg_index([entity])  # entity names are unique (the KG reader merges same-name entities)
    for item in entity_items(entity, pools, cfg, out):
        values = [v for v in entity.relations[item.relation]]
        user, assistant = render(item, values, cfg)
        meta = {"task": TASK, "question": item.stem, "options": item.options, "answer": item.answer,
                "category": item.relation, "entity": item.entity, "entity_type": item.entity_type,
                "style": cfg.style}
        ref = entity.ref
        src = source(ref=item.entity, group=f"entity:{item.entity}", file=ref.file if ref else None,
                     line=ref.line if ref else None)
        record = chat_record(user, assistant, meta, src, cfg.system_prompt)
        keep_verified(record, index, out)


class MCQStep(MapStep):
    """Generation as a map step: a batch of KG entities -> their verified questions (+ rejects,
    counters). Holds the settings and the option pools of the whole KG, computed in the driver."""

    name = "generate"

    def __init__(self, cfg: MCQConfig, pools: dict[str, set[str]]) -> None:
        self.cfg = cfg
        self.pools = pools

    def __call__(self, batch: list[KGEntity]) -> StepResult:
        out = TaskOutput()
        for entity in batch:
            entity_records(entity, self.pools, self.cfg, out)
        return StepResult(out.records, out.rejects, out.counters)


def keep_verified(record: SFTRecord, index: KGIndex, out: TaskOutput) -> None:
    """Add `record` to `out` when its key holds in the KG, else a reject saying why."""
    problem = verify_record(record, index)
    if problem is None:
        out.records.append(record)
        out.counters["keys_verified"] += 1
        return
    out.reject("verify", problem[0], problem[1], record.source, raw=record.to_row())
