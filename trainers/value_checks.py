"""Ranges of trl / transformers config values that the libraries accept but cannot mean.

`--max_steps -5` is taken by transformers as "no step limit" and trains full epochs; a negative
learning rate or batch size fails (if at all) deep inside the run. Every field below is checked on
the built config of any stage, so one table serves SFTConfig, DPOConfig, RewardConfig, GRPOConfig,
RLOOConfig, TrainingArguments and medmill's PPOConfig alike (a field a class lacks is skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medmill.schemas.errors import MedmillError

Check = tuple[Callable[[Any], bool], str]

_POSITIVE: Check = (lambda v: v > 0, "must be greater than 0")
_NON_NEGATIVE: Check = (lambda v: v >= 0, "must be 0 or more")
_SHARE: Check = (lambda v: 0 <= v <= 1, "must be between 0 and 1")
_OPEN_SHARE: Check = (lambda v: 0 < v <= 1, "must be in (0, 1]")

CHECKS: dict[str, Check] = {
    "max_steps": (lambda v: v > 0 or v == -1, "must be a positive number of steps, or -1 to train --num_train_epochs"),
    "num_train_epochs": _POSITIVE,
    "learning_rate": _POSITIVE,
    "per_device_train_batch_size": _POSITIVE,
    "per_device_eval_batch_size": _POSITIVE,
    "gradient_accumulation_steps": _POSITIVE,
    "logging_steps": _POSITIVE,
    "save_steps": _POSITIVE,
    "eval_steps": _POSITIVE,
    "save_total_limit": _POSITIVE,
    "warmup_steps": _NON_NEGATIVE,
    "warmup_ratio": _SHARE,
    "weight_decay": _NON_NEGATIVE,
    "max_grad_norm": _NON_NEGATIVE,
    "adam_epsilon": _POSITIVE,
    "adam_beta1": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "seed": (lambda v: 0 <= v < 2**32, "must be between 0 and 2**32 - 1"),
    "data_seed": (lambda v: 0 <= v < 2**32, "must be between 0 and 2**32 - 1"),
    "dataloader_num_workers": _NON_NEGATIVE,
    "max_length": _POSITIVE,
    "max_prompt_length": _POSITIVE,
    "max_completion_length": _POSITIVE,
    "beta": _NON_NEGATIVE,
    "temperature": _POSITIVE,
    "top_p": _OPEN_SHARE,
    "num_generations": (lambda v: v >= 2, "must be at least 2 (the advantage compares completions of one prompt)"),
    "label_smoothing": (lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"),
}


def check_values(config: Any) -> None:
    """Raise a one-line MedmillError for the first value out of its range (None means unset)."""
    for name, (ok, rule) in CHECKS.items():
        value = getattr(config, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not ok(value):
            raise MedmillError(f"--{name} {value}: {rule}")
