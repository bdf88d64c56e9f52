"""Department classification (no LLM): which department should a patient's question go to?

From corpora that carry a department (Toyhom). The label set is the departments with at least
`min_per_label` questions (rarer ones are rejected as `rare_label`, so the prompt never lists a
label with no training signal); `max_per_label` caps frequent ones by a seeded sample (the rest are
counted). The prompt lists the label set; the answer is the label. meta `task`="cls", `label`,
`labels`.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from medmill.builders.core.steps import GlobalStep, MapStep, StepResult
from medmill.builders.readers.department_csv import DepartmentQuestion
from medmill.builders.tasks.common import TaskOutput, chat_record, source

TASK = "cls"


class ClsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_per_label: int = Field(5, ge=1)
    max_per_label: int | None = Field(None, ge=1)
    max_question_chars: int = Field(1000, ge=10)
    seed: int = 42
    system_prompt: str | None = None


def prompt_for(question: str, labels: Sequence[str]) -> str:
    return (f"以下是关于医疗问诊科室分类的任务。请根据患者的问题判断应该就诊的科室，只能从以下科室中选择一个，"
            f"只回答科室名称。\n可选科室：{'、'.join(labels)}\n患者问题：{question}")


def label_set(questions: Sequence[DepartmentQuestion], cfg: ClsConfig) -> tuple[list[str], Counter]:
    """The labels (departments with at least `min_per_label` questions, most questions first) and the
    question count of every department."""
    counts = Counter(q.department for q in questions)
    labels = sorted((d for d, n in counts.items() if n >= cfg.min_per_label), key=lambda d: (-counts[d], d))
    return labels, counts


def build_cls(questions: Sequence[DepartmentQuestion], cfg: ClsConfig) -> TaskOutput:
    """The classification records (what `ClsFilterStep` + `ClsRecordsStep` do, in one call)."""
    labels, counts = label_set(questions, cfg)
    if not labels:
        return TaskOutput(counters=Counter(labels=0))
    kept = ClsFilterStep(cfg, counts)(list(questions))
    made = ClsRecordsStep(cfg, labels)(kept.records)
    counters = Counter(kept.counters)
    counters.update(made.counters)
    return TaskOutput(made.records, kept.rejects, counters)


class ClsFilterStep(MapStep):
    """Generation, per question: a question of a rare department or too long is a reject; the others
    pass on (as questions) to `ClsRecordsStep`. Holds the departments' question counts of the input."""

    name = "generate"

    def __init__(self, cfg: ClsConfig, counts: Counter) -> None:
        self.cfg = cfg
        self.counts = counts

    def __call__(self, batch: list[DepartmentQuestion]) -> StepResult:
        out = TaskOutput()
        kept: list[DepartmentQuestion] = []
        for q in batch:
            src = source(ref=f"{q.file}:{q.line}", group=None, file=q.file, line=q.line)
            n = self.counts[q.department]
            if n < self.cfg.min_per_label:
                out.reject("build", "rare_label", f"{q.department}: {n} question(s) (< {self.cfg.min_per_label})",
                           src, raw={"department": q.department, "title": q.title})
                continue
            if len(q.question) > self.cfg.max_question_chars:
                out.reject("build", "question_too_long", f"{len(q.question)} chars (> {self.cfg.max_question_chars})", src,
                           raw={"department": q.department, "title": q.title})
                continue
            kept.append(q)
        return StepResult(kept, out.rejects, out.counters)


class ClsRecordsStep(GlobalStep):
    """Generation over every kept question: at most `max_per_label` per label (seeded sample), records
    label by label (most questions first), each listing the whole label set."""

    name = "generate_labels"

    def __init__(self, cfg: ClsConfig, labels: list[str]) -> None:
        self.cfg = cfg
        self.labels = labels

    def __call__(self, batch: list[DepartmentQuestion]) -> StepResult:
        chosen, counters = select_by_label(batch, self.labels, self.cfg)
        made = ClsRecordStep(self.cfg, self.labels)(chosen)
        counters.update(made.counters)
        counters["labels"] = len(self.labels)
        return StepResult(made.records, made.rejects, counters)


def select_by_label(kept: Sequence[DepartmentQuestion], labels: list[str], cfg: ClsConfig) -> tuple[list[DepartmentQuestion], Counter]:
    """The questions that become records, label by label (`labels`' order), at most `max_per_label` of
    each (a sample seeded by the label); counters of the ones left out."""
    counters: Counter = Counter()
    by_label: dict[str, list[DepartmentQuestion]] = defaultdict(list)
    for q in kept:
        by_label[q.department].append(q)
    chosen: list[DepartmentQuestion] = []
    for label in labels:
        of_label = by_label[label]
        if cfg.max_per_label is not None and len(of_label) > cfg.max_per_label:
            rng = random.Random(f"{cfg.seed}\x00{label}")
            picked = set(rng.sample(range(len(of_label)), cfg.max_per_label))
            counters["skipped.over_max_per_label"] += len(of_label) - cfg.max_per_label
            of_label = [q for i, q in enumerate(of_label) if i in picked]
        chosen.extend(of_label)
    return chosen, counters


class ClsRecordStep(MapStep):
    """Generation, per chosen question (`select_by_label`): its record, listing the whole label set."""

    name = "generate"

    def __init__(self, cfg: ClsConfig, labels: list[str]) -> None:
        self.cfg = cfg
        self.labels = labels

    def __call__(self, batch: list[DepartmentQuestion]) -> StepResult:
        out = TaskOutput()
        for q in batch:
            label = q.department
            meta = {"task": TASK, "label": label, "labels": self.labels, "category": label}
            src = source(ref=f"{q.file}:{q.line}", group=None, file=q.file, line=q.line)
            out.records.append(chat_record(prompt_for(q.question, self.labels), label, meta, src, self.cfg.system_prompt))
            out.counters[f"label.{label}"] += 1
        return StepResult(out.records, out.rejects, out.counters)
