"""Perplexity on held-out text: exp(mean token NLL) over every token of the texts, each text cut into
windows of `max_length` tokens. Domain text beside general text shows forgetting after continued
pretraining (MedicalGPT #348): domain perplexity falling while general perplexity climbs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from medmill.evaluation.cache import ItemCache
from medmill.evaluation.models import LoadedModel
from medmill.evaluation.sources import Record

CHUNK = 32


def record_text(record: Record, kind: str) -> str:
    """pretrain: the text; sft: the conversation's contents, one turn per line."""
    if kind == "pretrain":
        return record.row["text"]
    return "\n".join(m["content"] for m in record.row.get("messages") or [])


def _nll(lm: LoadedModel, texts: list[str], max_length: int, batch_size: int) -> list[tuple[float, int]]:
    """(summed NLL, predicted tokens) per text."""
    import torch

    eos = lm.tokenizer.eos_token_id
    windows: list[tuple[int, list[int]]] = []
    for n, text in enumerate(texts):
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids = ids + [eos]
        for start in range(0, max(len(ids) - 1, 1), max_length):
            piece = ids[start : start + max_length + 1]  # predicts ids[start+1 .. start+max_length]
            if len(piece) > 1:
                windows.append((n, piece))
    totals = [(0.0, 0)] * len(texts)
    pad = lm.tokenizer.pad_token_id or 0
    for b in range(0, len(windows), batch_size):
        batch = windows[b : b + batch_size]
        width = max(len(p) for _, p in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (_, p) in enumerate(batch):
            ids[r, : len(p)] = torch.tensor(p)
            mask[r, : len(p)] = 1
        with torch.no_grad():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:].to(logp.device)
        token_nll = -logp.gather(2, target[..., None])[..., 0] * mask[:, 1:].to(logp.device)
        for r, (n, p) in enumerate(batch):
            s, k = totals[n]
            totals[n] = (s + float(token_nll[r].sum()), k + len(p) - 1)
    return totals


def run_ppl(
    lm: LoadedModel, records: list[Record], kind: str, cache: ItemCache, *, max_length: int, batch_size: int,
    advance: Callable[[int], None] = lambda n: None,
) -> list[dict[str, Any]]:  # fmt: skip
    todo = [r for r in records if r.key not in cache]
    advance(len(records) - len(todo))
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        window = min(max_length, lm.context_length - 1)  # a window plus its first token must fit the model
        totals = _nll(lm, [record_text(r, kind) for r in chunk], window, batch_size)
        cache.add([{"key": r.key, "nll": s, "tokens": k} for r, (s, k) in zip(chunk, totals, strict=True)])
        advance(len(chunk))
    return cache.rows([r.key for r in records])


def summarize_ppl(rows: list[dict[str, Any]]) -> dict[str, Any]:
    nll = sum(r["nll"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    return {"texts": len(rows), "tokens": tokens, "nll_per_token": nll / tokens if tokens else 0.0,
            "perplexity": math.exp(nll / tokens) if tokens else float("nan")}  # fmt: skip
