"""Train, resume, evaluate and save: the tail every transformers/trl-based stage shares."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medmill.schemas.errors import MedmillError
from medmill.trainers.modeling import resume_point
from medmill.trainers.options import TrainOptions
from medmill.trainers.preview import LengthReport

log = logging.getLogger(__name__)
SECRET_KEYS = ("token", "password", "api_key", "secret")


@dataclass
class StageResult:
    stage: str
    out: str
    global_step: int
    resumed_from: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    lengths: LengthReport | None = None
    history: dict[str, list[float]] = field(default_factory=dict)  # metric -> values logged over training
    sources: list = field(default_factory=list)  # data.SourceStats per --data
    problems: list[str] = field(default_factory=list)  # first bad rows, "file:line: reason"


def fit(trainer, opts: TrainOptions, tokenizer) -> tuple[str | None, dict[str, float]]:
    """trainer.train() with auto-resume, a final evaluation when there is a validation set, and the
    final model + tokenizer (chat template included) saved in --out."""
    resume = resume_point(opts)
    if resume:
        log.warning("resuming from %s", resume)
    from safetensors import SafetensorError

    try:
        output = trainer.train(resume_from_checkpoint=resume)
    except ValueError as e:
        if "checkpoint" in str(e).lower():
            raise MedmillError(f"cannot resume from {resume}: {str(e).splitlines()[0]}") from None
        raise
    except SafetensorError as e:  # a checkpoint whose weights were cut short
        raise MedmillError(f"cannot resume from {resume}: its weights are corrupt or cut short ({str(e).splitlines()[0]}); "
                           "delete that checkpoint or pass --no-resume") from None
    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    if trainer.eval_dataset is not None:
        step = trainer.state.global_step
        done = [e for e in trainer.state.log_history if e.get("step") == step and "eval_loss" in e]
        final = done[-1] if done else trainer.evaluate()  # the loop may have evaluated the last step already
        metrics.update({k: float(v) for k, v in final.items() if isinstance(v, int | float) and k.startswith("eval_")})
    trainer.save_model(opts.out)
    tokenizer.save_pretrained(opts.out)
    return resume, metrics


def history(trainer, keys: tuple[str, ...]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for entry in trainer.state.log_history:
        for k in keys:
            if k in entry and isinstance(entry[k], int | float) and math.isfinite(entry[k]):
                found.setdefault(k, []).append(float(entry[k]))
    return found


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<hidden>" if any(s in k.lower() for s in SECRET_KEYS) and v else _public(v)) for k, v in value.items()}
    return value


def write_run_info(result: StageResult, opts: TrainOptions, config, data, template: str | None) -> Path:
    """medmill_train.json in --out: options, config (secrets hidden), data sources, lengths, metrics."""
    config_dict = config.to_dict() if hasattr(config, "to_dict") else asdict(config)
    info = {
        "stage": result.stage,
        "options": asdict(opts),
        "config": _public(json.loads(json.dumps(config_dict, default=str))),
        "chat_template": template or "tokenizer's own",
        "data": [asdict(s) for s in data.sources],
        "bad_rows": dict(data.bad_reasons),
        "lengths": result.lengths.as_dict() if result.lengths else None,
        "global_step": result.global_step,
        "resumed_from": result.resumed_from,
        "metrics": result.metrics,
    }
    path = Path(opts.out) / "medmill_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
