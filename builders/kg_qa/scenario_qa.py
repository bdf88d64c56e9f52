"""KG -> patient-scenario QA with an LLM (`build-kg-qa --mode llm`), the way BenTsao/Huatuo built theirs:
per entity, the LLM gets that entity's facts and writes realistic patient questions (case, 主诉,
age/sex where natural) with doctor answers that use only those facts.

Every pair is checked before it becomes a record; a pair that fails says why in rejects.jsonl:
  not_chinese, question_too_short/long, answer_too_short/long, meta_talk (作为AI, 根据提供的信息,
  以下哪, 文本 ...), no_kg_value (the answer names none of the entity's KG values),
  restates_answer (the question mostly repeats the answer), duplicate_question, over_per_entity.
An entity without KG values to check answers against is rejected as no_usable_facts before any call.
An entity whose request failed is one reject with the engine's reason (retries_exhausted,
invalid_output with the raw reply, ...). Records' `meta` name the prompt id/version and the KG values
the answer states:

    meta = {"builder": "kg-qa", "mode": "llm", "prompt": "kg_qa_scenario@1", "entity": ...,
            "entity_type": ..., "values": [KG values in the answer], "pair": i, "model": ...}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.collect import Collector
from medmill.builders.kg_qa import BUILDER
from medmill.builders.kg_qa.template_qa import entity_source
from medmill.builders.llm.prompts import PromptTemplate
from medmill.builders.llm.types import LLMRequest, LLMResult
from medmill.builders.text.cjk import cjk_share
from medmill.builders.text.meta_talk import meta_talk
from medmill.builders.text.ngrams import char_bigrams
from medmill.schemas import Message, RejectRow, SFTRecord
from medmill.schemas.errors import MedmillError
from medmill.schemas.seeded import seeded_fraction
from medmill.schemas.sources import KGEntity

DEFAULT_PROMPT = "kg_qa_scenario"

_CLAUSE = re.compile(r"[，,。；;：:、\n（）()！？!?]+")


class ScenarioPair(BaseModel):
    question: str = Field(description="患者或家属以第一人称描述病例并提问")
    answer: str = Field(description="医生只依据给定知识的回答")


class ScenarioPairs(BaseModel):
    """The JSON the LLM must return (sent as json_schema where the server supports it)."""

    pairs: list[ScenarioPair] = Field(min_length=1)


class LLMQAConfig(BaseModel):
    """Settings of LLM mode (dumped into the manifest's params)."""

    model_config = ConfigDict(extra="forbid")

    per_entity: int = Field(3, ge=1, le=20)  # pairs asked for (and kept at most) per entity
    system_prompt: str | None = None  # system message of the records (not of the LLM prompt)
    prompt: str = DEFAULT_PROMPT  # a shipped prompt id or a YAML file
    max_fact_chars: int = Field(1500, ge=100)
    max_values_per_relation: int = Field(15, ge=1)
    min_question_chars: int = Field(10, ge=1)
    max_question_chars: int = Field(400, ge=10)
    min_answer_chars: int = Field(15, ge=1)
    max_answer_chars: int = Field(1200, ge=10)
    min_chinese: float = Field(0.6, ge=0.0, le=1.0)  # share of CJK among letters


@dataclass
class EntityFacts:
    """What the LLM is shown about one entity, and the KG values an answer may be checked against."""

    text: str
    values: list[str]


def entity_facts(entity: KGEntity, cfg: LLMQAConfig) -> EntityFacts:
    """Facts as "- 关系：值" lines within `max_fact_chars`; values = the short ones shown (≥ 2 chars)."""
    lines: list[str] = []
    values: list[str] = []
    used = 0
    for label, items in entity.relations.items():
        shown = [v for v in items if v.strip()][: cfg.max_values_per_relation]
        if not shown:
            continue
        line = f"- {label}：{'、'.join(shown)}"
        if used + len(line) > cfg.max_fact_chars:
            break
        lines.append(line)
        used += len(line)
        values.extend(v for v in shown if len(v) >= 2)
    for label, text in entity.attributes.items():
        text = " ".join(text.split())
        room = cfg.max_fact_chars - used - len(label) - 4
        if room < 20:
            break
        shown_text = text if len(text) <= room else text[:room].rstrip() + "……"
        lines.append(f"- {label}：{shown_text}")
        used += len(lines[-1])
        if 2 <= len(text) <= 30:
            values.append(text)
        else:  # long free text: its clauses are the facts an answer can repeat
            values.extend(c for c in _CLAUSE.split(shown_text.rstrip("…")) if 4 <= len(c) <= 20)
    return EntityFacts("\n".join(lines), list(dict.fromkeys(values)))


def build_requests(entities: Sequence[KGEntity], prompt: PromptTemplate, cfg: LLMQAConfig) -> list[LLMRequest]:
    requests = []
    for entity in entities:
        facts = entity_facts(entity, cfg)
        messages = prompt.render(name=entity.name, type=entity.type or "", facts=facts.text, n=cfg.per_entity)
        requests.append(LLMRequest(key=entity.name, messages=messages, schema=ScenarioPairs, prompt=prompt.ref))
    return requests


def restates(question: str, answer: str) -> bool:
    """The question carries the answer: most of the answer's character bigrams appear in it."""
    if answer.strip() in question:
        return True
    a, q = char_bigrams(answer, raw=True), char_bigrams(question, raw=True)
    return bool(a) and len(a & q) / len(a) >= 0.7


def check_pair(question: str, answer: str, facts: EntityFacts, cfg: LLMQAConfig) -> tuple[str, str] | None:
    """(reason, message) when the pair must not become a record, else None."""
    for who, text, lo, hi in (("question", question, cfg.min_question_chars, cfg.max_question_chars),
                              ("answer", answer, cfg.min_answer_chars, cfg.max_answer_chars)):
        if len(text) < lo:
            return f"{who}_too_short", f"{who} has {len(text)} chars (< {lo})"
        if len(text) > hi:
            return f"{who}_too_long", f"{who} has {len(text)} chars (> {hi})"
        share = cjk_share(text, no_letters=0.0)
        if share < cfg.min_chinese:
            return "not_chinese", f"{who} is {share:.0%} Chinese (< {cfg.min_chinese:.0%})"
        talk = meta_talk().scenario_word(text)
        if talk:
            return "meta_talk", f"{who} contains meta-talk {talk!r}"
    if not any(v in answer for v in facts.values):
        return "no_kg_value", "the answer states none of the entity's KG values"
    if restates(question, answer):
        return "restates_answer", "the question mostly repeats the answer"
    return None


def build_llm_records(
    entities: Sequence[KGEntity],
    results: Sequence[LLMResult],
    prompt: PromptTemplate,
    cfg: LLMQAConfig,
    model: str | None,
    out: Collector | None = None,
) -> Collector:
    """Records (in entity order) from the engine's results for `build_requests(entities, ...)`, into `out`."""
    out = out if out is not None else Collector()
    tag = f"{prompt.id}@{prompt.version}"
    for entity, result in zip(entities, results, strict=True):
        source = entity_source(entity)
        if not result.ok:
            out.counters[f"rejected.{result.error}"] += 1
            out.reject(RejectRow(stage="llm", reason=result.error or "llm_error", message=result.message,
                                 source=source, raw=result.raw))
            continue
        facts = entity_facts(entity, cfg)
        seen: set[str] = set()
        kept = 0
        for i, pair in enumerate(result.value.pairs):
            question, answer = pair.question.strip(), pair.answer.strip()
            out.counters["pairs_generated"] += 1
            problem = check_pair(question, answer, facts, cfg)
            if problem is None and question in seen:
                problem = ("duplicate_question", "the same question twice for this entity")
            if problem is None and kept >= cfg.per_entity:
                problem = ("over_per_entity", f"more than {cfg.per_entity} pairs for this entity")
            if problem is not None:
                reason, message = problem
                out.counters[f"rejected.{reason}"] += 1
                out.reject(RejectRow(stage="build", reason=reason, message=f"{entity.name}: {message}",
                                     source=source, raw={"question": question, "answer": answer}))
                continue
            seen.add(question)
            messages = [Message(role="system", content=cfg.system_prompt)] if cfg.system_prompt else []
            messages += [Message(role="user", content=question), Message(role="assistant", content=answer)]
            meta: dict[str, Any] = {
                "builder": BUILDER, "mode": "llm", "prompt": tag, "entity": entity.name,
                "entity_type": entity.type, "values": [v for v in facts.values if v in answer], "pair": i,
                "model": model,
            }
            out.add(SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=source, meta=meta))
            kept += 1
        if kept:
            out.counters["records.llm"] += kept
        if kept == 0:
            out.counters["entities_without_records"] += 1
    return out


def parse_mix(text: str | None) -> dict[str, float]:
    """"template=0.5,llm=0.5" -> {"template": 0.5, "llm": 0.5} (shares are normalised)."""
    if not text:
        return {}
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or name not in ("template", "llm") or share < 0:
            raise MedmillError(f"--mix expects template=SHARE,llm=SHARE, got {text!r}")
        shares[name] = share
    total = sum(shares.values())
    if total <= 0:
        raise MedmillError(f"--mix shares must add up to more than 0: {text!r}")
    return {k: v / total for k, v in shares.items()}


def split_by_mix(entities: Sequence[KGEntity], mix: dict[str, float], seed: int,
                 ) -> tuple[list[KGEntity], list[KGEntity]]:
    """(template entities, llm entities): each entity goes to one mode by a seeded hash of its name, so
    adding entities never moves another entity to the other mode."""
    llm_share = mix.get("llm", 0.0)
    template, llm = [], []
    for e in entities:
        (llm if seeded_fraction(seed, e.name) < llm_share else template).append(e)
    return template, llm


DESCRIPTION = (
    "Patient-scenario question/answer pairs written by an LLM from the facts of a medical knowledge graph "
    "(BenTsao/Huatuo style): for each entity the model saw only that entity's KG facts and wrote case-style "
    "patient questions with doctor answers. Every pair was checked (Chinese, length, no meta-talk, the answer "
    "states at least one KG value, the question does not restate the answer). Answers can still contain "
    "model errors beyond what these checks catch; they are not reviewed by clinicians."
)
