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

    meta = {"builder": "kg_qa_llm", "mode": "llm", "prompt": "kg_qa_scenario@1", "entity": ...,
            "entity_type": ..., "values": [KG values in the answer], "pair": i, "model": ...}
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.build import finish_build
from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.stages import curation_steps
from medmill.builders.kg_qa.template_qa import TemplateQAConfig, build_template_records, entity_source
from medmill.builders.kg_qa.templates import load_templates
from medmill.builders.llm.engine import LLMEngine
from medmill.builders.llm.prompts import PromptTemplate, load_prompt
from medmill.builders.llm.types import LLMRequest, LLMResult, LLMSettings
from medmill.builders.readers.kg import read_kg
from medmill.builders.text.cjk import cjk_share
from medmill.builders.text.meta_talk import meta_talk
from medmill.builders.text.ngrams import char_bigrams
from medmill.schemas import Message, RejectRow, SFTRecord
from medmill.schemas.errors import MedmillError
from medmill.schemas.seeded import seeded_fraction
from medmill.schemas.sources import KGEntity

BUILDER = "kg_qa_llm"
BUILDER_VERSION = "1"
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


@dataclass
class LLMQAResult:
    records: list[SFTRecord]
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)


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
) -> LLMQAResult:
    """Records (in entity order) from the engine's results for `build_requests(entities, ...)`."""
    out = LLMQAResult([])
    tag = f"{prompt.id}@{prompt.version}"
    for entity, result in zip(entities, results, strict=True):
        source = entity_source(entity, BUILDER, BUILDER_VERSION)
        if not result.ok:
            out.counters[f"rejected.{result.error}"] += 1
            out.rejects.append(RejectRow(stage="llm", reason=result.error or "llm_error", message=result.message,
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
                out.rejects.append(RejectRow(stage="build", reason=reason, message=f"{entity.name}: {message}",
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
            out.records.append(SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=source, meta=meta))
            kept += 1
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


class KGQALLMBuild(BaseModel):
    """The typed configuration of `build-kg-qa --mode llm` (and `--mix`); the manifest's params."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    inputs: list[Path] = Field(min_length=1)
    out: Path
    mix: dict[str, float] = Field(default_factory=lambda: {"llm": 1.0})
    qa: LLMQAConfig = Field(default_factory=LLMQAConfig)
    template_qa: TemplateQAConfig = Field(default_factory=TemplateQAConfig)
    templates: Path | None = None
    seed: int = 42
    val_size: float = Field(0.0, ge=0.0, lt=1.0)
    test_size: float = Field(0.0, ge=0.0, lt=1.0)
    license: str = "other"
    source_licenses: dict[str, str] = Field(default_factory=dict)
    llm: LLMSettings
    curation: Any = None  # CurationSettings (None: curation defaults)


def _sqlite_siblings(path: Path) -> list[Path]:
    """The files sqlite keeps beside a database in WAL mode."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def run_kg_qa_llm(cfg: KGQALLMBuild, *, command: str) -> tuple[Manifest, dict[str, Any]]:
    """Read the KG, generate (LLM share + template share), curate, write `cfg.out`.

    Re-running the same command (e.g. after a kill) replays finished LLM calls from the request cache
    and ends with the same dataset."""
    t0 = time.perf_counter()
    # the output dir (and a --cache file) may sit inside an input folder: a re-run must not read them
    own = [cfg.out] + ([cfg.llm.cache, *_sqlite_siblings(cfg.llm.cache)] if cfg.llm.cache else [])
    read = read_kg(cfg.inputs, exclude=own)
    template_part, llm_part = split_by_mix(read.entities, cfg.mix, cfg.seed)
    records: list[SFTRecord] = []
    rejects = list(read.rejects)
    counters = Counter(read.counters)
    counters["entities_read"] = len(read.entities)
    prompts = []
    if template_part:
        templates = load_templates(cfg.templates)
        done = build_template_records(template_part, templates, cfg.template_qa)
        records += done.records
        rejects += done.rejects
        counters += done.counters
        counters["entities_template"] = len(template_part)
        prompts.append(templates.ref)
    prompt = load_prompt(cfg.qa.prompt)
    prompts.append(prompt.ref)
    usable = []
    for entity in llm_part:
        if entity_facts(entity, cfg.qa).values:
            usable.append(entity)
            continue
        counters["rejected.no_usable_facts"] += 1
        rejects.append(RejectRow(stage="build", reason="no_usable_facts",
                                 message=f"entity {entity.name!r} has no KG values to write questions from",
                                 source=entity_source(entity, BUILDER, BUILDER_VERSION)))
    counters["entities_llm"] = len(usable)
    t1 = time.perf_counter()
    built = LLMQAResult([])
    llm_info: dict[str, Any] = {}
    usage: dict[str, Any] = {"calls_sent": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                             "retries": 0, "reasks": 0}
    if usable:  # `--mix template=1` (or a share with no usable entity) needs no LLM, model or endpoint
        with LLMEngine(cfg.llm, cfg.out) as engine:
            results = engine.run(build_requests(usable, prompt, cfg.qa), desc="scenario QA")
            built = build_llm_records(usable, results, prompt, cfg.qa, cfg.llm.model)
            llm_info, usage = engine.describe(), engine.usage
    t2 = time.perf_counter()
    records += built.records
    rejects += built.rejects
    counters += built.counters
    # the LLM settings go to the manifest's `llm` entry (describe(): host only, never a full URL or key)
    params = cfg.model_dump(mode="json", exclude={"out", "curation", "llm"})
    if cfg.curation is not None and hasattr(cfg.curation, "model_dump"):
        params["curation"] = cfg.curation.model_dump(mode="json")
    info = BuildInfo(
        kind="sft", builder=BUILDER, command=command, params=params, inputs=read.files, seed=cfg.seed,
        val_size=cfg.val_size, test_size=cfg.test_size, license=cfg.license, source_licenses=cfg.source_licenses,
        counters=counters, prompts=prompts, llm=llm_info, usage=usage,
        timings={"read": t1 - t0, "generate": t2 - t1}, description=DESCRIPTION,
    )
    manifest = finish_build(cfg.out, records, rejects, info, curation_steps("sft", cfg.curation), started=t0)
    figures = {
        "entities read": len(read.entities),
        "entities (llm / template)": f"{len(usable)} / {len(template_part)}",
        "LLM calls sent / cached": f"{usage['calls_sent']} / {usage['cache_hits']}",
        "LLM tokens (prompt + completion)": f"{usage['prompt_tokens']:,} + {usage['completion_tokens']:,}",
        "LLM retries / re-asks": f"{usage['retries']} / {usage['reasks']}",
    }
    return manifest, figures
