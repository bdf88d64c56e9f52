"""Generation against references: greedy answers to the held-out conversations of sft dirs, scored
with ROUGE-L and BLEU on jieba words, and grounding where records carry KG values (kg-qa meta
`values`) or verified book references (book-qa meta `reference`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medmill.evaluation.cache import ItemCache
from medmill.evaluation.lm import generate
from medmill.evaluation.metrics import corpus_bleu, grounding_facts, grounding_recall, rouge_l
from medmill.evaluation.models import LoadedModel
from medmill.evaluation.sources import Problems, Record

CHUNK = 16


@dataclass
class GenItem:
    key: str
    origin: str
    prompt: list[dict[str, str]]  # the conversation up to the answer
    reference: str
    meta: dict[str, Any]


def gen_items(records: list[Record], problems: Problems) -> list[GenItem]:
    """The last assistant turn is the reference; what comes before it is the prompt."""
    items = []
    for r in records:
        msgs = [{"role": m["role"], "content": m["content"]} for m in r.row.get("messages") or []]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None or not any(m["role"] == "user" for m in msgs[:last]):
            problems.add(r.origin, "no user turn followed by an assistant answer")
            continue
        items.append(GenItem(r.key, r.origin, msgs[:last], msgs[last]["content"], r.row.get("meta") or {}))
    return items


def run_generation(
    lm: LoadedModel, items: list[GenItem], cache: ItemCache, *, max_new_tokens: int, batch_size: int,
    advance: Callable[[int], None] = lambda n: None,
) -> list[dict[str, Any]]:  # fmt: skip
    """{"key", "output"} per item, in order; cached answers are not generated again."""
    todo = [i for i in items if i.key not in cache]
    advance(len(items) - len(todo))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        outputs = generate(lm, [i.prompt for i in chunk], max_new_tokens, batch_size)
        cache.add([{"key": i.key, "output": o} for i, o in zip(chunk, outputs, strict=True)])
        advance(len(chunk))
    return cache.rows([i.key for i in items])


def score_generation(items: list[GenItem], rows: list[dict[str, Any]], threshold: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, per-item details)."""
    outputs = {r["key"]: r["output"] for r in rows}
    details = []
    grounded: dict[str, list[float]] = {"kg": [], "reference": []}
    for item in items:
        out = outputs[item.key]
        row: dict[str, Any] = {"key": item.key, "origin": item.origin, "output": out, "reference": item.reference,
                               "rouge_l": rouge_l(out, item.reference)}  # fmt: skip
        facts = grounding_facts(item.meta)
        if facts:
            kind, values = facts
            row["grounding_kind"] = kind
            row["grounding_recall"] = grounding_recall(out, kind, values, threshold)
            grounded[kind].append(row["grounding_recall"])
        details.append(row)
    n = len(details)
    summary: dict[str, Any] = {
        "items": n,
        "rouge_l": sum(d["rouge_l"] for d in details) / n if n else 0.0,
        "bleu": corpus_bleu([d["output"] for d in details], [d["reference"] for d in details]),
        "empty_answers": sum(not d["output"].strip() for d in details),
        "mean_answer_chars": sum(len(d["output"]) for d in details) / n if n else 0.0,
    }
    every = grounded["kg"] + grounded["reference"]
    if every:
        summary["grounding_items"] = len(every)
        summary["grounding_rate"] = sum(r >= threshold for r in every) / len(every)
        summary["grounding_recall"] = sum(every) / len(every)
        for kind, values in grounded.items():
            if values:
                summary[f"grounding_rate_{kind}"] = sum(r >= threshold for r in values) / len(values)
    return summary, details
