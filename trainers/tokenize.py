"""Token-accurate length handling shared by the stages: render with the chat template, count what a
length limit truncates or drops, and keep the loss mask for the preview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medmill.trainers.preview import LengthReport, length_report


@dataclass
class Tokenized:
    dataset: Any  # datasets.Dataset
    report: LengthReport
    example_ids: list[int]
    example_mask: list[bool]


def tokenize_conversations(dataset, tokenizer, max_length: int | None, assistant_only: bool, drop_long: bool) -> Tokenized:
    """messages -> input_ids (+ assistant_masks). Rows whose answer would be cut away entirely are dropped
    (they add no loss); with `drop_long` every over-long row is dropped so no answer loses its EOS."""

    def render(example):
        out = tokenizer.apply_chat_template(
            example["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        mask = out["assistant_masks"]
        return {"input_ids": out["input_ids"], "assistant_masks": mask, "n_tokens": len(out["input_ids"])}

    rendered = dataset.map(render, remove_columns=dataset.column_names, desc="rendering chat template")
    lengths = rendered["n_tokens"]
    masks = rendered["assistant_masks"]
    limit = max_length or max(lengths)
    keep, truncated, dropped = [], 0, 0
    for i, (n, mask) in enumerate(zip(lengths, masks, strict=True)):
        trained_left = any(mask[:limit]) if assistant_only else True
        if n > limit and (drop_long or not trained_left):
            dropped += 1
        elif not any(mask) and assistant_only:
            dropped += 1  # a template without generation markers would give no loss at all
        else:
            truncated += n > limit
            keep.append(i)
    kept = rendered.select(keep).remove_columns(["n_tokens"])
    if not assistant_only:
        kept = kept.remove_columns(["assistant_masks"])
    first = rendered[keep[0]] if keep else rendered[0]
    ids = first["input_ids"][:limit]
    mask = [bool(m) for m in first["assistant_masks"][:limit]] if assistant_only else [True] * len(ids)
    return Tokenized(kept, length_report(lengths, max_length, truncated, dropped), ids, mask)


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
