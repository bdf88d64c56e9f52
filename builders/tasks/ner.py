"""Entity-extraction examples (no LLM): texts tagged with the KG's entity lexicon, TCMChat-style.

The lexicon: entity names typed by their KG type (a typeless entity with drug relations such as
适应症 / 不良反应 is a 药物), and relation values typed by their relation (症状 -> 症状, 并发症 -> 疾病,
常用药物 -> 药物, 检查 -> 检查, 就诊科室 -> 科室 ...; `--ner-type REL=TYPE` adds or overrides). A term
listed under two types keeps the type most of its listings give (ties: the first seen), counted.
Matching: every occurrence of every term, then longest first, then leftmost, a span is kept only
when it overlaps no span kept before (高血压性心脏病 wins over 高血压 and 心脏病).

Output as TCMChat's NER benchmark: `类型:实体，实体；类型:实体` (full-width ，and ；), types in order
of first appearance, entities in order of appearance without repeats. meta `task`="ner",
`entities` [{text, type, start, end}], `types` (the label set of the prompt).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.tasks.common import TaskOutput, chat_record, source
from medmill.schemas.sources import KGEntity, TextChunk

TASK = "ner"
RELATION_TYPES: dict[str, str] = {
    "症状": "症状", "相关症状": "症状", "典型症状": "症状", "伴随症状": "症状", "不良反应": "症状",
    "并发症": "疾病", "适应症": "疾病", "适应证": "疾病", "相关疾病": "疾病", "鉴别诊断": "疾病",
    "常用药物": "药物", "药物": "药物", "推荐药物": "药物", "药物治疗": "药物", "常用药品": "药物", "推荐药品": "药物",
    "检查": "检查", "辅助检查": "检查", "实验室检查": "检查", "影像学检查": "检查",
    "就诊科室": "科室", "所属科室": "科室", "科室": "科室",
    "治疗方式": "治疗", "治疗": "治疗", "手术治疗": "治疗",
}
DRUG_RELATIONS = ("适应症", "适应证", "不良反应", "禁忌", "用法用量")
INSTRUCTION = "以下是关于医学文本实体识别任务。"


class NERConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    relation_types: dict[str, str] = Field(default_factory=dict)  # added to / overriding RELATION_TYPES
    min_term_chars: int = Field(2, ge=1)
    max_term_chars: int = Field(20, ge=2)
    system_prompt: str | None = None


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str
    type: str


def build_lexicon(entities: Sequence[KGEntity], cfg: NERConfig, out: TaskOutput) -> dict[str, str]:
    """term -> type, from entity names and typed relation values."""
    mapping = {**RELATION_TYPES, **cfg.relation_types}
    votes: dict[str, Counter] = defaultdict(Counter)
    for e in entities:
        etype = e.type or ("药物" if any(r in e.relations for r in DRUG_RELATIONS) else None)
        if etype:
            votes[e.name][etype] += 1
        else:
            out.counters["lexicon.untyped_entities"] += 1
        for rel, values in e.relations.items():
            vtype = mapping.get(rel)
            if vtype is None:
                out.counters["lexicon.untyped_relation_values"] += len(values)
                continue
            for v in values:
                votes[v.strip()][vtype] += 1
    lexicon: dict[str, str] = {}
    for term, counter in votes.items():
        if not cfg.min_term_chars <= len(term) <= cfg.max_term_chars:
            out.counters["lexicon.terms_out_of_length"] += 1
            continue
        if len(counter) > 1:
            out.counters["lexicon.type_conflicts"] += 1
        lexicon[term] = counter.most_common(1)[0][0]  # most_common keeps first-seen order on ties
    out.counters["lexicon.terms"] = len(lexicon)
    return lexicon


def find_spans(text: str, lexicon: dict[str, str]) -> list[Span]:
    """Non-overlapping lexicon matches: longest first, then leftmost; returned in text order."""
    by_first: dict[str, list[str]] = defaultdict(list)
    for term in lexicon:
        by_first[term[0]].append(term)
    found = [(i, i + len(term), term) for i, ch in enumerate(text) for term in by_first.get(ch, ())
             if text.startswith(term, i)]
    found.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
    taken = [False] * len(text)
    kept: list[Span] = []
    for start, end, term in found:
        if any(taken[start:end]):
            continue
        taken[start:end] = [True] * (end - start)
        kept.append(Span(start, end, term, lexicon[term]))
    return sorted(kept, key=lambda s: s.start)


def render_answer(spans: Sequence[Span]) -> str:
    """`类型:实体，实体；类型:实体`, types by first appearance, entities deduplicated in order."""
    grouped: dict[str, list[str]] = {}
    for s in spans:
        names = grouped.setdefault(s.type, [])
        if s.text not in names:
            names.append(s.text)
    return "；".join(f"{t}:{'，'.join(names)}" for t, names in grouped.items())


def build_ner(chunks: Sequence[TextChunk], entities: Sequence[KGEntity], cfg: NERConfig) -> TaskOutput:
    """Every chunk's example (what `NERStep` does batch by batch, in one call)."""
    out = TaskOutput()
    step = NERStep(cfg, build_lexicon(entities, cfg, out))
    result = step(list(chunks))
    out.records += result.records
    out.counters.update(result.counters)
    return out


class NERStep(MapStep):
    """Generation as a map step: a batch of text chunks -> one tagged example per chunk with an entity.
    Holds the settings and the lexicon of the whole KG (built in the driver)."""

    name = "generate"

    def __init__(self, cfg: NERConfig, lexicon: dict[str, str]) -> None:
        self.cfg = cfg
        self.lexicon = lexicon
        self.types = list(dict.fromkeys(lexicon.values()))  # in the order the KG first gives each type

    def __call__(self, batch: list[TextChunk]) -> StepResult:
        out = TaskOutput()
        for chunk in batch:
            text = chunk.text.strip()
            spans = find_spans(text, self.lexicon)
            if not spans:
                out.counters["texts_without_entities"] += 1
                continue
            user = f"{INSTRUCTION}请找出文本中的{'、'.join(self.types)}实体，按“类型:实体，实体；类型:实体”的格式输出。\n文本：{text}"
            meta = {"task": TASK, "types": self.types, "chunk": chunk.id,
                    "entities": [{"text": s.text, "type": s.type, "start": s.start, "end": s.end} for s in spans]}
            src = source(ref=chunk.id, group=f"chunk:{chunk.id}", file=chunk.file, offset=chunk.offset)
            out.records.append(chat_record(user, render_answer(spans), meta, src, self.cfg.system_prompt))
            out.counters["entities_tagged"] += len(spans)
        return StepResult(out.records, out.rejects, out.counters)
