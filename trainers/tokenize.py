"""Token-accurate length handling shared by the stages: render with the chat template, count what a
length limit truncates or drops, and keep the loss mask for the preview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medmill.schemas.errors import MedmillError
from medmill.trainers.preview import LengthReport, length_report


@dataclass
class Tokenized:
    dataset: Any  # datasets.Dataset
    report: LengthReport
    example_ids: list[int]
    example_mask: list[bool]


def tokenize_conversations(dataset, tokenizer, max_length: int | None, assistant_only: bool, drop_long: bool) -> Tokenized:
    """messages -> input_ids (+ assistant_masks). Rows whose answer would be cut away entirely are dropped
    (they add no loss); with `drop_long` every over-long row is dropped so no answer loses its EOS.
    Only per-row counts leave the (disk-backed) dataset, so large sets do not fill memory."""
    limit = max_length or 10**12

    def render(example):
        out = tokenizer.apply_chat_template(
            example["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        mask = out["assistant_masks"]
        n = len(out["input_ids"])
        trained_left = any(mask[:limit]) if assistant_only else True
        over = n > limit
        keep = not (over and (drop_long or not trained_left)) and (any(mask) or not assistant_only)
        return {"input_ids": out["input_ids"], "assistant_masks": mask, "n_tokens": n, "keep": keep}

    rendered = dataset.map(render, remove_columns=dataset.column_names, desc="rendering chat template")
    lengths, keep = rendered["n_tokens"], rendered["keep"]
    kept_idx = [i for i, k in enumerate(keep) if k]
    truncated = sum(1 for i in kept_idx if lengths[i] > limit)
    kept = rendered.select(kept_idx).remove_columns(["n_tokens", "keep"])
    if not assistant_only:
        kept = kept.remove_columns(["assistant_masks"])
    first = rendered[kept_idx[0]] if kept_idx else rendered[0]
    ids = first["input_ids"][:limit]
    mask = [bool(m) for m in first["assistant_masks"][:limit]] if assistant_only else [True] * len(ids)
    return Tokenized(kept, length_report(lengths, max_length, truncated, len(keep) - len(kept_idx)), ids, mask)


def pair_lengths(dataset, tokenizer) -> list[int]:
    """Tokens of prompt+chosen and prompt+rejected (the longer of the two) per preference row."""

    def count(example):
        sides = [
            tokenizer.apply_chat_template(example["prompt"] + example[side], tokenize=True, return_dict=True)["input_ids"]
            for side in ("chosen", "rejected")
        ]
        return {"n_tokens": max(len(s) for s in sides)}

    return dataset.map(count, desc="measuring pairs")["n_tokens"]


def limit_pairs(dataset, tokenizer, max_length: int | None, drop_long: bool):
    """-> (dataset, LengthReport): pairs over the limit are counted, and dropped with `drop_long`."""
    lengths = pair_lengths(dataset, tokenizer)
    over = [max_length is not None and n > max_length for n in lengths]
    if drop_long and any(over):
        dataset = dataset.select([i for i, o in enumerate(over) if not o])
        return dataset, length_report(lengths, max_length, 0, sum(over))
    return dataset, length_report(lengths, max_length, sum(over), 0)


def prompt_and_answer(tokenizer, prompt: list[dict], answer: list[dict]) -> tuple[list[int], list[bool]]:
    """Token ids of a prompt+answer and which of them belong to the answer (for previews)."""
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
    head = tokenizer.apply_chat_template(prompt, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
    n = len(head) if full[: len(head)] == head else 0
    return full, [i >= n for i in range(len(full))]


def pair_splits(data, tokenizer, max_length: int | None, drop_long: bool):
    """Train and validation pairs for rm/dpo, length-limited alike -> (train, report, evaluation)."""
    train, report = limit_pairs(data.train, tokenizer, max_length, drop_long)
    if len(train) == 0:
        raise MedmillError(f"no preference pair fits --max_length {max_length}")
    evaluation = limit_pairs(data.validation, tokenizer, max_length, drop_long)[0] if data.validation else None
    return train, report, evaluation
