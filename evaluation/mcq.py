"""Multiple-choice accuracy.

loglik (default, no generation): every candidate answer is scored as a continuation of the prompt
(the checkpoint's chat template up to the assistant turn); the best one is the model's answer. The
candidates are the option letters (`--continuation letter`, the MMLU / CMExam convention) or letter plus
option text (`--continuation option`). A multiple-answer item's candidates are every non-empty set of
letters ("A", "AC", ...), so it is right only when exactly the keyed set scores best. Both the summed
and the per-token mean log-likelihood are kept: `accuracy` uses the mean when `--length-norm` (the
default), the sum otherwise, and both accuracies are reported.

generate: greedy answer, the option letters it names are parsed out ("答案：B", "A、C", "AC");
an answer naming no option counts as wrong and is counted as unparsed.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from medmill.evaluation.cache import ItemCache
from medmill.evaluation.lm import continuation_logprobs, generate
from medmill.evaluation.mcq_data import MCQItem
from medmill.evaluation.models import LoadedModel, render_prompt

MAX_SUBSET_OPTIONS = 8  # 255 candidate sets; beyond that use --scoring generate
CHUNK = 32  # items per cache write
_ANSWER_LEAD = re.compile(r"(正确)?答案(是|为)?[:：]?\s*|answer\s*(is)?[:：]?\s*", re.IGNORECASE)


def candidates(item: MCQItem, continuation: str) -> list[tuple[str, str]]:
    """(answer letters, continuation text) pairs."""
    letters = list(item.options)
    if item.multi:
        if len(letters) > MAX_SUBSET_OPTIONS:
            raise ValueError(f"{len(letters)} options are too many to score every answer set; use --scoring generate")
        sets = ["".join(c) for k in range(1, len(letters) + 1) for c in itertools.combinations(letters, k)]
    else:
        sets = letters
    if continuation == "letter":
        return [(s, s) for s in sets]
    return [(s, "\n".join(f"{c}. {item.options[c]}" for c in s)) for s in sets]


def messages_of(item: MCQItem) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": item.system}] if item.system else []
    return msgs + [{"role": "user", "content": item.prompt}]


def parse_letters(text: str, item: MCQItem) -> str:
    """The option letters an answer names, sorted; "" when none. Single-choice keeps the first."""
    body = _ANSWER_LEAD.sub("", text.strip(), count=1).strip()
    m = re.match(r"[\(（]?([A-J](?:[\s,，、和及与/]*[A-J])*)(?![A-Za-z])", body)
    found = [c for c in re.findall(r"[A-J]", m.group(1))] if m else []
    if not found:  # the letters somewhere later ("我认为是B")
        found = re.findall(r"(?<![A-Za-z])([A-J])(?![A-Za-z])", body)
    found = [c for c in dict.fromkeys(found) if c in item.options]
    if not found:
        return ""
    return found[0] if not item.multi else "".join(sorted(found))


def _row(item: MCQItem, pred: str, **extra: Any) -> dict[str, Any]:
    return {"key": item.key, "answer": item.answer, "pred": pred, "correct": pred == item.answer,
            "category": item.category, "multi": item.multi, **extra}  # fmt: skip


def score_loglik(lm: LoadedModel, items: list[MCQItem], continuation: str, length_norm: bool, batch_size: int) -> list[dict[str, Any]]:
    pairs, owners = [], []
    for n, item in enumerate(items):
        context = render_prompt(lm.tokenizer, messages_of(item))
        for letters, text in candidates(item, continuation):
            pairs.append((context, text))
            owners.append((n, letters))
    scored = continuation_logprobs(lm, pairs, batch_size)
    best_sum: dict[int, tuple[float, str]] = {}
    best_mean: dict[int, tuple[float, str]] = {}
    for (n, letters), c in zip(owners, scored, strict=True):
        if n not in best_sum or c.logprob > best_sum[n][0]:
            best_sum[n] = (c.logprob, letters)
        if n not in best_mean or c.mean > best_mean[n][0]:
            best_mean[n] = (c.mean, letters)
    rows = []
    for n, item in enumerate(items):
        pred_sum, pred_mean = best_sum[n][1], best_mean[n][1]
        rows.append(_row(item, pred_mean if length_norm else pred_sum, pred_sum=pred_sum, pred_norm=pred_mean))
    return rows


def score_generate(lm: LoadedModel, items: list[MCQItem], max_new_tokens: int, batch_size: int) -> list[dict[str, Any]]:
    texts = generate(lm, [messages_of(i) for i in items], max_new_tokens, batch_size)
    return [_row(item, parse_letters(t, item), output=t) for item, t in zip(items, texts, strict=True)]


def run_mcq(
    lm: LoadedModel,
    items: list[MCQItem],
    cache: ItemCache,
    *,
    scoring: str,
    continuation: str,
    length_norm: bool,
    batch_size: int,
    max_new_tokens: int,
    advance: Callable[[int], None] = lambda n: None,
) -> list[dict[str, Any]]:
    """Per-item rows in item order; items already in `cache` are not scored again."""
    todo = [i for i in items if i.key not in cache]
    advance(len(items) - len(todo))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        if scoring == "loglik":
            rows = score_loglik(lm, chunk, continuation, length_norm, batch_size)
        else:
            rows = score_generate(lm, chunk, max_new_tokens, batch_size)
        cache.add(rows)
        advance(len(chunk))
    return cache.rows([i.key for i in items])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy overall, by answer kind and by category (and for loglik, by sum and by mean)."""
    n = len(rows)
    out: dict[str, Any] = {"items": n, "correct": sum(r["correct"] for r in rows)}
    out["accuracy"] = out["correct"] / n if n else 0.0
    if rows and "pred_sum" in rows[0]:
        out["accuracy_sum"] = sum(r["pred_sum"] == r["answer"] for r in rows) / n
        out["accuracy_norm"] = sum(r["pred_norm"] == r["answer"] for r in rows) / n
    if rows and "output" in rows[0]:
        out["unparsed"] = sum(r["pred"] == "" for r in rows)
    for label, want in (("single", False), ("multi", True)):
        part = [r for r in rows if r["multi"] == want]
        if part:
            out[f"accuracy_{label}"] = sum(r["correct"] for r in part) / len(part)
            out[f"items_{label}"] = len(part)
    by: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by[r["category"] or "(none)"].append(r["correct"])
    out["by_category"] = {c: {"items": len(v), "accuracy": sum(v) / len(v)} for c, v in sorted(by.items())}
    keys: dict[str, int] = defaultdict(int)
    for r in rows:
        keys[r["answer"]] += 1
    out["answer_keys"] = dict(sorted(keys.items()))
    return out
