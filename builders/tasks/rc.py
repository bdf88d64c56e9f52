"""Reading comprehension (LLM) from text chunks, TCMChat's `<text>…<question>…` layout.

Chunks come from build-book-qa's loaders and chunker. The LLM proposes questions with answers that
must be spans of the chunk; each answer is verified verbatim in the chunk text (after NFKC and
whitespace are ignored on both sides), and its position is kept. A pair that fails is a reject:
`answer_not_in_text`, `answer_too_long`, `answer_in_question`, `duplicate_question`, or the
engine's reason for a failed request. meta `task`="rc", `question`, `answer`, `answer_start`, `chunk`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.collect import Collector
from medmill.builders.llm.prompts import PromptTemplate, load_prompt
from medmill.builders.llm.types import LLMRequest, LLMResult
from medmill.builders.tasks.common import TaskOutput, chat_record, source
from medmill.schemas.sources import TextChunk

TASK = "rc"
INSTRUCTION = "以下是关于医学文本阅读理解任务。"


class RCPair(BaseModel):
    question: str
    answer: str = Field(description="逐字复制的原文片段")


class RCPairs(BaseModel):
    pairs: list[RCPair] = Field(min_length=1)


class RCConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_chunk: int = Field(3, ge=1, le=10)
    max_answer_chars: int = Field(80, ge=2)
    min_question_chars: int = Field(4, ge=1)
    prompt: str = "tasks_rc"
    system_prompt: str | None = None


class Runner(Protocol):
    def run(self, requests: list[LLMRequest], desc: str = "") -> list[LLMResult]: ...


def find_span(answer: str, text: str) -> tuple[int, int] | None:
    """(start, end) of `answer` in `text`: exact, else ignoring whitespace and NFKC differences (then
    text[start:end] is the verbatim span the record keeps); None when the text does not hold it."""
    plain = answer.strip()
    if plain and plain in text:
        start = text.index(plain)
        return start, start + len(plain)
    wanted = "".join(unicodedata.normalize("NFKC", answer).split())
    if not wanted:
        return None
    kept = [(i, unicodedata.normalize("NFKC", ch)) for i, ch in enumerate(text) if not ch.isspace()]
    offsets, acc = [], 0  # offset of each kept char in the squeezed text
    for _, c in kept:
        offsets.append(acc)
        acc += len(c)
    pos = "".join(c for _, c in kept).find(wanted)
    if pos < 0 or pos not in offsets:
        return None
    first = offsets.index(pos)
    last = next((k for k in range(first, len(kept)) if offsets[k] + len(kept[k][1]) >= pos + len(wanted)), None)
    if last is None or offsets[last] + len(kept[last][1]) != pos + len(wanted):
        return None
    return kept[first][0], kept[last][0] + 1


def requests_for(chunks: Sequence[TextChunk], prompt: PromptTemplate, cfg: RCConfig) -> list[LLMRequest]:
    return [LLMRequest(key=c.id, messages=prompt.render(text=c.text, n=cfg.per_chunk), schema=RCPairs,
                       prompt=prompt.ref) for c in chunks]


def build_rc(chunks: Sequence[TextChunk], results: Sequence[LLMResult], prompt: PromptTemplate, cfg: RCConfig,
             model: str | None = None) -> TaskOutput:
    out = TaskOutput()
    tag = f"{prompt.id}@{prompt.version}"
    for chunk, result in zip(chunks, results, strict=True):
        src = source(ref=chunk.id, group=f"chunk:{chunk.id}", file=chunk.file, offset=chunk.offset)
        if not result.ok:
            out.reject("llm", result.error or "llm_error", result.message, src, raw=result.raw)
            continue
        seen: set[str] = set()
        for i, pair in enumerate(result.value.pairs):
            out.counters["pairs_generated"] += 1
            question, answer = pair.question.strip(), pair.answer.strip()
            raw = {"question": question, "answer": answer}
            span = find_span(answer, chunk.text)
            if span is not None:
                answer = chunk.text[span[0]:span[1]]  # the text's own spelling
            problem = None
            if len(question) < cfg.min_question_chars:
                problem = ("question_too_short", f"{len(question)} chars")
            elif span is None:
                problem = ("answer_not_in_text", "the answer is not a span of the text")
            elif len(answer) > cfg.max_answer_chars:
                problem = ("answer_too_long", f"{len(answer)} chars (> {cfg.max_answer_chars})")
            elif answer in question:
                problem = ("answer_in_question", "the question contains its answer")
            elif question in seen:
                problem = ("duplicate_question", "the same question twice for this text")
            if problem:
                out.reject("build", problem[0], f"{chunk.id}: {problem[1]}", src, raw=raw)
                continue
            seen.add(question)
            user = f"{INSTRUCTION}\n<text>{chunk.text}\n<question>{question}"
            meta = {"task": TASK, "question": question, "answer": answer, "answer_start": span[0], "chunk": chunk.id,
                    "pair": i, "prompt": tag, "model": model}
            out.records.append(chat_record(user, answer, meta, src, cfg.system_prompt))
    return out


@dataclass
class RCWork:
    """The rc LLM step's work on a batch of chunks (picklable): one request per chunk, verified spans."""

    cfg: RCConfig
    model: str | None

    def __call__(self, chunks: list[TextChunk], engine: Runner, out: Collector) -> None:
        prompt = load_prompt(self.cfg.prompt)
        result = build_rc(chunks, engine.run(requests_for(chunks, prompt, self.cfg), desc="reading comprehension"),
                          prompt, self.cfg, self.model)
        out.records.extend(result.records)
        out.rejects.extend(result.rejects)
        out.counters.update(result.counters)
