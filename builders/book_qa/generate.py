"""build-book-qa: guideline / textbook chunks -> grounded question-answer SFT records.

Two LLM steps per chunk, unlike MedicalGPT-zh (whose answers were written from the question alone):
1. questions of diverse types, answerable from the chunk alone and self-contained;
2. an answer written from chunk + question, with the chunk sentences that support it (`reference`).
Every reference is verified in the chunk, answers with no verified reference or too little
character-bigram overlap with the chunk are rejected as ungrounded, meta-talk and "the text does not
say" answers are rejected, and near-duplicate questions across chunks are dropped before answering.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.book_qa import BUILDER, BUILDER_VERSION
from medmill.builders.core.collect import Collector
from medmill.builders.llm.prompts import PromptTemplate, load_prompt
from medmill.builders.llm.types import LLMRequest, LLMResult, Runner
from medmill.builders.text.grounding import answer_problem, question_problem, verify_references
from medmill.builders.text.ngrams import containment, near_duplicates
from medmill.schemas import Message, RejectRow, SFTRecord, Source, TextChunk

QUESTION_TYPES = ["概念", "机制", "诊断", "鉴别诊断", "治疗", "用药剂量", "注意事项", "预后"]


class QuestionItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str
    type: str = ""


class QuestionSet(BaseModel):
    """Structured output of the question step."""

    model_config = ConfigDict(extra="ignore")

    questions: list[QuestionItem]


class GroundedAnswer(BaseModel):
    """Structured output of the answer step."""

    model_config = ConfigDict(extra="ignore")

    answerable: bool
    answer: str
    reference: list[str] = Field(default_factory=list)


class QAConfig(BaseModel):
    """How questions are asked and answers checked (the `qa` section of the build config)."""

    model_config = ConfigDict(extra="forbid")

    questions_per_chunk: int = Field(3, ge=1, le=20)
    question_types: list[str] = Field(default_factory=lambda: list(QUESTION_TYPES), min_length=1)
    min_overlap: float = Field(0.5, ge=0.0, le=1.0)  # share of answer bigrams found in the chunk
    dedup_threshold: float = Field(0.7, gt=0.0, le=1.0)  # bigram Jaccard of near-duplicate questions
    min_chunk_chars: int = Field(80, ge=1)
    question_prompt: str = "book_qa_questions"
    answer_prompt: str = "book_qa_answer"


@dataclass
class _Candidate:
    chunk: TextChunk
    question: str
    type: str


def section_group(chunk: TextChunk) -> str:
    """Split group: chunks of one section (overlapping pieces included) never straddle splits."""
    key = f"{chunk.file}\x00{' > '.join(chunk.headings)}"
    return "s" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _source(chunk: TextChunk) -> Source:
    return Source(
        file=chunk.file,
        line=chunk.meta.get("line"),
        offset=chunk.offset,
        ref=chunk.id,
        group=section_group(chunk),
        builder=BUILDER,
        builder_version=BUILDER_VERSION,
    )


def _reject(stage: str, reason: str, message: str, chunk: TextChunk, raw: Any = None) -> RejectRow:
    return RejectRow(
        stage=f"{BUILDER}.{stage}", reason=reason, message=message, source=_source(chunk), raw=raw
    )


def _llm_reject(stage: str, result: LLMResult, chunk: TextChunk, extra: dict | None = None) -> RejectRow:
    return _reject(
        stage, result.error or "llm_error", result.message, chunk, {"raw": result.raw, **(extra or {})}
    )


def build_book_qa(chunks: Sequence[TextChunk], config: QAConfig, engine: Runner,
                  out: Collector | None = None) -> Collector:
    """Questions, then grounded answers, for every chunk, into `out`, with one engine; see the module
    docstring (a build runs the same stages as steps: `QuestionWork`, `drop_near_duplicates`,
    `AnswerWork`, `coverage`)."""
    out = out if out is not None else Collector()
    for ref in prompt_refs(config):
        out.prompt(ref)
    QuestionWork(config)(list(chunks), engine, out)
    candidates, out.records = out.records, []
    kept, rejects = drop_near_duplicates(candidates, config)  # type: ignore[arg-type]
    out.rejects.extend(rejects)
    AnswerWork(config)(kept, engine, out)
    out.counters.update(coverage(usable_chunk_ids(chunks, config), out.records))
    return out


def prompt_refs(config: QAConfig) -> list[dict[str, str]]:
    return [load_prompt(config.question_prompt).ref, load_prompt(config.answer_prompt).ref]


def usable_chunk_ids(chunks: Sequence[TextChunk], config: QAConfig) -> list[str]:
    """The chunks long enough to ask about (the others are rejected by `QuestionWork`)."""
    return [c.id for c in chunks if len(c.text) >= config.min_chunk_chars]


def coverage(usable: Sequence[str], records: Sequence[SFTRecord]) -> Counter:
    """`chunks_with_<n>_qa`: how many usable chunks got n pairs."""
    per_chunk = Counter(r.meta["chunk_id"] for r in records)
    return Counter(f"chunks_with_{per_chunk.get(chunk_id, 0)}_qa" for chunk_id in usable)


@dataclass
class QuestionWork:
    """Item-wise step 1 (picklable): chunks in, question candidates (`out.records`) out; short chunks
    and bad questions rejected."""

    config: QAConfig

    def __call__(self, chunks: list[TextChunk], engine: Runner, out: Collector) -> None:
        config = self.config
        out.records.extend(_questions(chunks, config, load_prompt(config.question_prompt), engine, out))  # type: ignore[arg-type]


@dataclass
class AnswerWork:
    """Item-wise step 2 (picklable): question candidates in, grounded QA records out."""

    config: QAConfig

    def __call__(self, candidates: list[_Candidate], engine: Runner, out: Collector) -> None:
        config = self.config
        _answers(candidates, config, load_prompt(config.question_prompt), load_prompt(config.answer_prompt), engine, out)


def _questions(
    chunks: list[TextChunk], config: QAConfig, prompt: PromptTemplate, engine: Runner, out: Collector
) -> list[_Candidate]:
    requests = [
        LLMRequest(
            key=f"questions:{c.id}",
            messages=prompt.render(
                chunk=c.text, headings=c.headings, n=config.questions_per_chunk, types=config.question_types
            ),
            schema=QuestionSet,
            prompt=prompt.ref,
        )
        for c in chunks
        if len(c.text) >= config.min_chunk_chars
    ]
    results = iter(engine.run(requests, desc="questions"))
    candidates: list[_Candidate] = []
    wanted = set(config.question_types)
    for chunk in chunks:  # rejects in chunk order, so any cut of the chunks into batches gives the same rows
        if len(chunk.text) < config.min_chunk_chars:
            out.reject(_reject("chunks", "chunk_too_short", f"{len(chunk.text)} characters", chunk, chunk.text))
            continue
        out.counters["chunks_used"] += 1
        result = next(results)
        if not result.ok:
            out.reject(_llm_reject("questions", result, chunk))
            continue
        seen: set[str] = set()
        kept = 0
        for item in result.value.questions:
            out.counters["questions_generated"] += 1
            question = item.question.strip()
            problem = question_problem(question)
            if problem is None and item.type.strip() not in wanted:
                problem = ("type_not_requested", f"type {item.type!r} is not one of {sorted(wanted)}")
            if problem is None and question in seen:
                problem = ("duplicate_in_chunk", "asked twice for the same chunk")
            if problem is None and kept >= config.questions_per_chunk:
                problem = ("beyond_requested", f"more than {config.questions_per_chunk} questions returned")
            if problem is not None:
                out.reject(_reject("questions", problem[0], problem[1], chunk, item.model_dump()))
                continue
            seen.add(question)
            kept += 1
            candidates.append(_Candidate(chunk, question, item.type.strip()))
    return candidates


def drop_near_duplicates(candidates: list[_Candidate], config: QAConfig) -> tuple[list[_Candidate], list[RejectRow]]:
    """Near-duplicate questions across every chunk (the whole-input stage between the two LLM steps):
    the first of each group stays."""
    dupes = near_duplicates([c.question for c in candidates], config.dedup_threshold)
    rejects = []
    for i, j in sorted(dupes.items()):
        c, first = candidates[i], candidates[j]
        rejects.append(
            _reject(
                "dedup",
                "near_duplicate_question",
                f"near-duplicate of {first.question!r} (chunk {first.chunk.id})",
                c.chunk,
                {"question": c.question},
            )
        )
    return [c for i, c in enumerate(candidates) if i not in dupes], rejects


def _answers(
    candidates: list[_Candidate],
    config: QAConfig,
    q_prompt: PromptTemplate,
    prompt: PromptTemplate,
    engine: Runner,
    out: Collector,
) -> None:
    requests = [
        LLMRequest(
            key=f"answer:{c.chunk.id}:{hashlib.sha256(c.question.encode()).hexdigest()[:12]}",
            messages=prompt.render(chunk=c.chunk.text, headings=c.chunk.headings, question=c.question),
            schema=GroundedAnswer,
            prompt=prompt.ref,
        )
        for c in candidates
    ]
    for cand, result in zip(candidates, engine.run(requests, desc="answers"), strict=True):
        chunk = cand.chunk
        raw = {"question": cand.question}
        if not result.ok:
            out.reject(_llm_reject("answers", result, chunk, raw))
            continue
        value: GroundedAnswer = result.value
        raw = {**raw, **value.model_dump()}
        if result.finish_reason == "length":
            out.reject(
                _reject("answers", "truncated", "the answer was cut at max_tokens", chunk, raw)
            )
            continue
        if not value.answerable:
            out.reject(
                _reject("answers", "unanswerable", "the model found no answer in the chunk", chunk, raw)
            )
            continue
        answer = value.answer.strip()
        problem = answer_problem(answer)
        if problem is not None:
            out.reject(_reject("answers", problem[0], problem[1], chunk, raw))
            continue
        refs = verify_references(value.reference, chunk.text)
        out.counters["references_unverified"] += len(refs.unverified)
        if not refs.verified:
            shown = value.reference[0][:60] if value.reference else "none given"
            out.reject(
                _reject(
                    "answers",
                    "reference_not_in_chunk",
                    f"no reference found in the chunk ({shown!r})",
                    chunk,
                    raw,
                )
            )
            continue
        overlap = containment(answer, chunk.text)
        if overlap < config.min_overlap:
            out.reject(
                _reject(
                    "answers",
                    "low_overlap",
                    f"{overlap:.2f} of the answer's character bigrams are in the chunk (min {config.min_overlap})",
                    chunk,
                    raw,
                )
            )
            continue
        messages = [Message(role="user", content=cand.question), Message(role="assistant", content=answer)]
        out.add(
            SFTRecord(
                id=SFTRecord.make_id(messages),
                messages=messages,
                source=_source(chunk),
                meta={
                    "chunk_id": chunk.id,
                    "document": chunk.file,
                    "headings": chunk.headings,
                    "question_type": cand.type,
                    "reference": refs.verified,
                    "overlap": round(overlap, 3),
                    "prompts": {"question": q_prompt.ref, "answer": prompt.ref},
                },
            )
        )
        out.counters[f"type.{cand.type}"] += 1
