"""The self-instruct loop: rounds of requests until N tasks are accepted.

Each round plans its requests' categories (least-filled first), shows each request a few seed tasks
(drawn with a generator seeded by --seed and the request number, preferring seeds of the requested
category) and the most recent accepted questions, and asks for K tasks as JSON. Replies are checked
one task at a time, in request order: shape, length, Chinese, meta-talk, then novelty against the
seeds and everything accepted so far. The loop is deterministic given --seed and the replies, so a
re-run replays every finished request from the engine's cache and pays only for new ones.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.llm.prompts import PromptTemplate
from medmill.builders.llm.types import LLMRequest, LLMResult
from medmill.builders.self_instruct import BUILDER, BUILDER_VERSION
from medmill.builders.self_instruct.balance import CategoryBalance
from medmill.builders.self_instruct.novelty import NoveltyIndex
from medmill.builders.self_instruct.seeds import SeedTask
from medmill.builders.text.cjk import cjk_share
from medmill.builders.text.meta_talk import meta_talk
from medmill.schemas import Message, RejectRow, SFTRecord, Source

PROMPT_ECHO = ("示例任务", "JSON")  # the request's own words leaking into a task


class Exchange(BaseModel):
    patient: str = Field(description="患者或家属说的话")
    doctor: str = Field(description="医生的回答")


class GeneratedTask(BaseModel):
    turns: list[Exchange] = Field(min_length=1)


class TaskBatch(BaseModel):
    """The JSON each request must return."""

    tasks: list[GeneratedTask] = Field(min_length=1)


class GenerationSettings(BaseModel):
    """How tasks are asked for and checked (dumped into the manifest's params)."""

    model_config = ConfigDict(extra="forbid")

    num: int = Field(ge=1)  # accepted tasks to reach
    per_request: int = Field(5, ge=1, le=20)
    round_size: int = Field(8, ge=1)  # requests per round (sent concurrently); changing it changes the requests
    max_requests: int | None = Field(None, ge=1)  # default: 3 x the requests N needs + round_size
    turns: int = Field(1, ge=1, le=10)
    categories: list[str] = Field(min_length=1)
    seeds_per_request: int = Field(4, ge=1, le=20)
    recent_per_request: int = Field(6, ge=0, le=50)
    novelty_threshold: float = Field(0.6, gt=0.0, le=1.0)  # char-3-gram Jaccard at or above = near-copy
    seed: int = 42
    system_prompt: str | None = None
    max_seed_answer_chars: int = Field(300, ge=20)
    min_question_chars: int = Field(6, ge=1)
    min_answer_chars: int = Field(10, ge=1)
    max_chars: int = Field(2000, ge=20)
    min_chinese: float = Field(0.5, ge=0.0, le=1.0)

    def request_cap(self) -> int:
        quota = math.ceil(self.num / len(self.categories))
        per_request = min(self.per_request, quota)
        return self.max_requests or 3 * math.ceil(self.num / per_request) + self.round_size


class Runner(Protocol):
    def run(self, requests: list[LLMRequest], desc: str = "") -> list[LLMResult]: ...


@dataclass
class Accepted:
    category: str
    exchanges: list[tuple[str, str]]
    request: int
    item: int
    similarity: float
    nearest: str | None


@dataclass
class SelfInstructResult:
    records: list[SFTRecord] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    categories: dict[str, int] = field(default_factory=dict)
    requests: int = 0


def question_text(exchanges: Sequence[tuple[str, str]]) -> str:
    """What novelty is measured on: the patient's words (answers to different questions may agree)."""
    return "\n".join(p for p, _ in exchanges)


def choose_seeds(seeds: Sequence[SeedTask], category: str, n: int, rng: random.Random) -> list[SeedTask]:
    """Up to `n` seeds: at most half from the requested category, the rest from all seeds, no repeats."""
    same = [s for s in seeds if s.category == category]
    picked = rng.sample(same, min(len(same), max(1, n // 2))) if same else []
    rest = [s for s in seeds if s not in picked]
    picked += rng.sample(rest, min(len(rest), n - len(picked)))
    return picked


def task_problem(exchanges: list[tuple[str, str]], cfg: GenerationSettings) -> tuple[str, str] | None:
    """(reason, message) when a generated task must not be kept, else None."""
    if len(exchanges) != cfg.turns:
        return "wrong_turn_count", f"{len(exchanges)} turn(s), asked for {cfg.turns}"
    for patient, doctor in exchanges:
        for who, text, least in (("question", patient, cfg.min_question_chars), ("answer", doctor, cfg.min_answer_chars)):
            if len(text) < least:
                return f"{who}_too_short", f"{who} has {len(text)} chars (< {least})"
            if len(text) > cfg.max_chars:
                return f"{who}_too_long", f"{who} has {len(text)} chars (> {cfg.max_chars})"
            share = cjk_share(text, no_letters=0.0)
            if share < cfg.min_chinese:
                return "not_chinese", f"{who} is {share:.0%} Chinese (< {cfg.min_chinese:.0%})"
            talk = meta_talk().answer_pattern.search(text)
            echo = next((w for w in PROMPT_ECHO if w in text), None)
            if talk or echo:
                return "meta_talk", f"{who} contains {talk.group(0) if talk else echo!r}"
    return None


class SelfInstructLoop:
    """State of one run: balance, novelty index, accepted tasks; `run(runner)` drives it to N."""

    def __init__(self, seeds: Sequence[SeedTask], prompt: PromptTemplate, cfg: GenerationSettings,
                 model: str | None = None) -> None:
        self.seeds, self.prompt, self.cfg, self.model = list(seeds), prompt, cfg, model
        self.hints: dict[str, str] = {str(k): str(v) for k, v in (prompt.extra.get("categories") or {}).items()}
        self.balance = CategoryBalance(cfg.categories)
        self.index = NoveltyIndex(cfg.novelty_threshold)
        self.index.add_many([s.question for s in self.seeds], [f"seed:{Path(s.file).name}:{s.line}" for s in self.seeds])
        self.accepted: list[Accepted] = []
        self.out = SelfInstructResult()
        self.requests_made = 0

    # --- requests ------------------------------------------------------------------------------------

    def request(self, number: int, category: str, k: int) -> LLMRequest:
        """Request `number` for `category`: a pure function of --seed, the number and the accepted tasks."""
        rng = random.Random(f"{self.cfg.seed}:{number}")
        shown = choose_seeds(self.seeds, category, self.cfg.seeds_per_request, rng)
        limit = self.cfg.max_seed_answer_chars
        seeds = [{"category": s.category, "question": s.question,
                  "answer": s.answer if len(s.answer) <= limit else s.answer[:limit] + "……"} for s in shown]
        recent = [question_text(a.exchanges).replace("\n", " / ") for a in self.accepted[-self.cfg.recent_per_request:]] \
            if self.cfg.recent_per_request else []
        messages = self.prompt.render(k=k, category=category, hint=self.hints.get(category, ""),
                                      turns=self.cfg.turns, seeds=seeds, recent=recent)
        # `sample` keeps two requests with the same text (a round that accepted nothing) apart in the cache
        return LLMRequest(key=f"request:{number}", messages=messages, schema=TaskBatch, prompt=self.prompt.ref,
                          params={"sample": number})

    # --- the loop ------------------------------------------------------------------------------------

    def run(self, runner: Runner, on_round: Callable[[int, int], None] | None = None) -> SelfInstructResult:
        cfg = self.cfg
        cap = cfg.request_cap()
        quota = math.ceil(cfg.num / len(cfg.categories))
        while len(self.accepted) < cfg.num and self.requests_made < cap:
            plan = self.balance.plan(min(cfg.round_size, cap - self.requests_made), cfg.per_request,
                                     need=cfg.num - len(self.accepted), quota=quota)
            first = self.requests_made
            requests = [self.request(first + j, category, k) for j, (category, k) in enumerate(plan)]
            results = runner.run(requests, desc=f"self-instruct {len(self.accepted)}/{cfg.num}")
            self.requests_made += len(plan)
            for j, ((category, k), result) in enumerate(zip(plan, results, strict=True)):
                self._take(first + j, category, k, result)
            if on_round:
                on_round(len(self.accepted), cfg.num)
        if len(self.accepted) < cfg.num:
            self.out.counters["stopped_at_max_requests"] = 1
        return self._finish()

    def _reject(self, stage: str, reason: str, message: str, number: int, raw: Any, item: int | None = None) -> None:
        self.out.counters[f"rejected.{reason}"] += 1
        ref = f"request:{number}" + (f":{item}" if item is not None else "")
        self.out.rejects.append(RejectRow(stage=stage, reason=reason, message=message, raw=raw,
                                          source=Source(ref=ref, group=f"request:{number}", builder=BUILDER,
                                                        builder_version=BUILDER_VERSION)))

    def _take(self, number: int, category: str, asked: int, result: LLMResult) -> None:
        counters = self.out.counters
        counters["requests"] += 1
        if not result.ok:
            self._reject("llm", result.error or "llm_error", result.message, number, result.raw)
            return
        for item, task in enumerate(result.value.tasks):
            counters["tasks_generated"] += 1
            exchanges = [(e.patient.strip(), e.doctor.strip()) for e in task.turns]
            raw = {"category": category, "turns": [{"patient": p, "doctor": d} for p, d in exchanges]}
            if item >= asked:
                counters["tasks_beyond_asked"] += 1  # more than the request asked for: balance keeps to k
                continue
            if len(self.accepted) >= self.cfg.num:
                counters["tasks_beyond_target"] += 1  # N reached inside this round: not needed
                continue
            problem = task_problem(exchanges, self.cfg)
            if problem:
                self._reject("build", problem[0], f"{category}: {problem[1]}", number, raw, item)
                continue
            novel, near = self.index.is_novel(question_text(exchanges))
            if not novel:
                self._reject("novelty", "near_copy",
                             f"{category}: similarity {near.similarity:.2f} (>= {self.cfg.novelty_threshold}) to {near.label}",
                             number, {**raw, "nearest": near.label, "similarity": round(near.similarity, 4)}, item)
                continue
            accepted = Accepted(category, exchanges, number, item, near.similarity, near.label)
            self.accepted.append(accepted)
            self.balance.add(category)
            self.index.add(question_text(exchanges), f"request:{number}:{item}")

    def _finish(self) -> SelfInstructResult:
        out = self.out
        out.requests = self.requests_made
        tag = f"{self.prompt.id}@{self.prompt.version}"
        for a in self.accepted:
            messages = [Message(role="system", content=self.cfg.system_prompt)] if self.cfg.system_prompt else []
            for patient, doctor in a.exchanges:
                messages += [Message(role="user", content=patient), Message(role="assistant", content=doctor)]
            meta = {"task": "self_instruct", "category": a.category, "turns": len(a.exchanges), "prompt": tag,
                    "request": a.request, "item": a.item, "novelty_max_similarity": round(a.similarity, 4),
                    "nearest": a.nearest, "model": self.model}
            source = Source(ref=f"request:{a.request}:{a.item}", group=f"request:{a.request}", builder=BUILDER,
                            builder_version=BUILDER_VERSION)
            out.records.append(SFTRecord(id=SFTRecord.make_id(messages), messages=messages, source=source, meta=meta))
        out.categories = self.balance.counts()
        out.counters["accepted"] = len(self.accepted)
        for category, n in out.categories.items():
            out.counters[f"category.{category}"] = n
        return out
