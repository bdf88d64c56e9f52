"""Training data: medmill dataset dirs and public-format files, mixed by weight, split for validation.

`--data DIR[=weight]`: a weight of 2 repeats a source twice, 0.5 takes a seeded half, so a small
medical set can be mixed with a larger general one (MedicalGPT #202/#203 advice) without new files.
Validation comes from the dir's own `validation` split; otherwise `--val-size` holds out a share of
groups (entity / paper / conversation from `source.group`) so near-copies never straddle the split.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.schemas.errors import MedmillError
from medmill.trainers.datadirs import dir_kind, is_dataset_dir, load_dir_splits
from medmill.trainers.importers import CONVERTERS, BadRow, read_rows

# The record kind a stage reads, and the dataset-dir kinds it accepts.
STAGE_INPUT = {"pt": "pretrain", "sft": "sft", "rm": "preference", "dpo": "preference", "ppo": "prompt"}
DIR_KINDS = {"pretrain": {"pretrain"}, "sft": {"sft"}, "preference": {"preference"}, "prompt": {"sft", "preference"}}
COLUMNS = {"pretrain": ["text"], "sft": ["messages"], "preference": ["prompt", "chosen", "rejected"], "prompt": ["prompt"]}
MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class DataSpec:
    path: Path
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        path, _, weight = text.rpartition("=")
        if path and not Path(text).exists():
            try:
                value = float(weight)
            except ValueError:
                raise MedmillError(f"--data {text!r}: the part after '=' must be a weight (a number)") from None
            if value <= 0 or not math.isfinite(value):
                raise MedmillError(f"--data {text!r}: the weight must be a positive number")
            return cls(Path(path), value)
        return cls(Path(text))


@dataclass
class SourceStats:
    path: str
    kind: str
    rows: int = 0
    train: int = 0
    validation: int = 0
    bad: int = 0


@dataclass
class TrainingData:
    train: Any  # datasets.Dataset
    validation: Any | None
    sources: list[SourceStats] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: reason", first few
    bad_reasons: Counter = field(default_factory=Counter)


def _rows_of_dir(path: Path, kind: str) -> dict[str, list[dict[str, Any]]]:
    found = dir_kind(path)
    if found not in DIR_KINDS[kind]:
        raise MedmillError(f"{path} holds {found} records; this stage needs {' or '.join(sorted(DIR_KINDS[kind]))}")
    out: dict[str, list[dict[str, Any]]] = {}
    for split, table in load_dir_splits(path).items():
        rows = table.to_pylist()
        for row in rows:
            src = row.get("source") or {}
            row["__group"] = src.get("group") or row.get("id") or ""
            if kind == "prompt":
                row["prompt"] = row["prompt"] if found == "preference" else _without_last_answer(row["messages"])
        out[split] = [{c: r[c] for c in [*COLUMNS[kind], "__group"]} for r in rows]
    return out


def _without_last_answer(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return messages[: max(i for i, m in enumerate(messages) if m["role"] == "user") + 1]


def _rows_of_file(path: Path, kind: str, stats: SourceStats, data: TrainingData) -> list[dict[str, Any]]:
    convert = CONVERTERS[kind]
    rows = []
    try:
        for line, raw in read_rows(path):
            try:
                if isinstance(raw, BadRow):
                    raise raw
                row = convert(raw)
            except BadRow as e:
                stats.bad += 1
                data.bad_reasons[str(e).split(":")[0]] += 1
                if len(data.problems) < MAX_PROBLEMS_SHOWN:
                    data.problems.append(f"{path}:{line}: {e}")
                continue
            row["__group"] = f"{path.name}:{line}"
            rows.append(row)
    except UnicodeDecodeError:
        raise MedmillError(f"{path} is not UTF-8 text; convert it (or build a dataset dir with medmill first)") from None
    return rows


def _in_validation(group: str, val_size: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_size


def _weighted(rows: list[dict[str, Any]], weight: float, rng: random.Random) -> list[dict[str, Any]]:
    whole, frac = int(weight), weight - int(weight)
    return rows * whole + rng.sample(rows, round(len(rows) * frac))


def load_training_data(specs: list[DataSpec], kind: str, val_size: float = 0.0, seed: int = 42) -> TrainingData:
    """All sources of one kind -> shuffled train (weights applied) + validation datasets."""
    from datasets import Dataset

    if not specs:
        raise MedmillError("no --data given: pass one or more dataset dirs or files (DIR[=weight])")
    if not 0 <= val_size < 1:
        raise MedmillError("--val-size must be in [0, 1)")
    rng = random.Random(seed)
    data = TrainingData(train=None, validation=None)
    train: list[dict[str, Any]] = []
    validation: list[dict[str, Any]] = []
    for spec in specs:
        stats = SourceStats(str(spec.path), kind)
        if is_dataset_dir(spec.path):
            splits = _rows_of_dir(spec.path, kind)
            stats.kind = f"dir:{dir_kind(spec.path)}"
        elif spec.path.is_file():
            splits = {"train": _rows_of_file(spec.path, kind, stats, data)}
            stats.kind = "file"
        else:
            raise MedmillError(f"--data {spec.path}: no such dataset dir or file")
        rows = splits.get("train", [])
        held = splits.get("validation", [])
        if not held and val_size > 0:
            held = [r for r in rows if _in_validation(r["__group"], val_size, seed)]
            rows = [r for r in rows if not _in_validation(r["__group"], val_size, seed)]
        stats.rows = sum(len(v) for v in splits.values())
        picked = _weighted(rows, spec.weight, rng)
        stats.train, stats.validation = len(picked), len(held)
        train += picked
        validation += held
        data.sources.append(stats)
    if not train:
        raise MedmillError("the --data sources hold no usable training rows" + _problem_hint(data))
    rng.shuffle(train)
    columns = COLUMNS[kind]
    data.train = Dataset.from_list([{c: r[c] for c in columns} for r in train])
    data.validation = Dataset.from_list([{c: r[c] for c in columns} for r in validation]) if validation else None
    return data


def _problem_hint(data: TrainingData) -> str:
    return f" (first problem: {data.problems[0]})" if data.problems else ""
