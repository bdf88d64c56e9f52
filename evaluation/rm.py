"""Reward-model pairwise accuracy: the share of held-out pairs whose chosen answer scores above the
rejected one, overall and per perturbation kind (build-prefs corrupt pairs carry meta `perturbation`),
so a reward model that only learnt "longer is better" or misses dose changes shows it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from medmill.evaluation.cache import ItemCache
from medmill.evaluation.models import LoadedModel
from medmill.evaluation.sources import Record

CHUNK = 32


def conversation_scores(lm: LoadedModel, conversations: list[list[dict[str, str]]], batch_size: int) -> list[float]:
    """The scorer's logit for each full conversation rendered with its chat template."""
    import torch

    tok = lm.tokenizer
    texts = [tok.apply_chat_template(c, tokenize=False) for c in conversations]
    scores: list[float] = []
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        for b in range(0, len(texts), batch_size):
            enc = tok(texts[b : b + batch_size], add_special_tokens=False, return_tensors="pt", padding=True,
                      truncation=True, max_length=lm.context_length)  # fmt: skip
            with torch.no_grad():
                logits = lm.model(input_ids=enc["input_ids"].to(lm.device), attention_mask=enc["attention_mask"].to(lm.device)).logits
            scores += [float(x) for x in logits[:, 0].float().cpu()]
    finally:
        tok.padding_side = side
    return scores


def run_rm(
    lm: LoadedModel, records: list[Record], cache: ItemCache, *, batch_size: int, advance: Callable[[int], None] = lambda n: None
) -> list[dict[str, Any]]:
    todo = [r for r in records if r.key not in cache]
    advance(len(records) - len(todo))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        convs = []
        for r in chunk:
            prompt = list(r.row["prompt"])
            convs += [prompt + list(r.row["chosen"]), prompt + list(r.row["rejected"])]
        scores = conversation_scores(lm, convs, batch_size)
        rows = []
        for n, r in enumerate(chunk):
            kind = (r.row.get("meta") or {}).get("perturbation") or "(none)"
            rows.append({"key": r.key, "chosen": scores[2 * n], "rejected": scores[2 * n + 1], "perturbation": str(kind)})
        cache.add(rows)
        advance(len(chunk))
    return cache.rows([r.key for r in records])


def summarize_rm(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy counts a pair right only when chosen scores strictly higher; ties are reported apart."""
    def acc(part: list[dict[str, Any]]) -> float:
        return sum(r["chosen"] > r["rejected"] for r in part) / len(part) if part else 0.0

    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["perturbation"]].append(r)
    margins = [r["chosen"] - r["rejected"] for r in rows]
    return {
        "pairs": len(rows),
        "accuracy": acc(rows),
        "ties": sum(r["chosen"] == r["rejected"] for r in rows),
        "mean_margin": sum(margins) / len(margins) if margins else 0.0,
        "by_perturbation": {k: {"pairs": len(v), "accuracy": acc(v)} for k, v in sorted(by.items())},
    }
