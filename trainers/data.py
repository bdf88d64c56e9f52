"""Training data: medmill dataset dirs and public-format files, mixed by weight, split for validation.

`--data DIR[=weight]`: a weight of 2 repeats a source twice, 0.5 takes a seeded half, so a small
medical set can be mixed with a larger general one (MedicalGPT #202/#203 advice) without new files.
Validation comes from the dir's own `validation` split; otherwise `--val-size` holds out a share of
groups (entity / paper / conversation from `source.group`) so near-copies never straddle the split.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.schemas.dataset_dir import detect_kind, is_dataset_dir, load_splits
from medmill.schemas.errors import MedmillError
from medmill.schemas.seeded import seeded_fraction
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


def _datasets_of_dir(path: Path, kind: str) -> dict[str, Any]:
    """{split: datasets.Dataset} with the stage's columns + `__group`, kept in Arrow (no Python rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset

    found = detect_kind(path)
    if found not in DIR_KINDS[kind]:
        raise MedmillError(f"{path} holds {found} records; this stage needs {' or '.join(sorted(DIR_KINDS[kind]))}")
    out = {}
    for split, table in load_splits(path).items():
        ids = table.column("id") if "id" in table.column_names else pa.array([f"{split}:{i}" for i in range(len(table))])
        group = pc.coalesce(pc.struct_field(table.column("source"), "group"), ids) if "source" in table.column_names else ids
        wanted = COLUMNS["sft"] if kind == "prompt" and found == "sft" else COLUMNS[kind]
        ds = Dataset(table.select(wanted).append_column("__group", pc.cast(group, pa.string())))
        if kind == "prompt" and found == "sft":
            ds = ds.map(lambda row: {"prompt": _without_last_answer(row["messages"])}, remove_columns=["messages"])
        out[split] = ds
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
    return seeded_fraction(seed, group) < val_size


def _weighted_indices(n: int, weight: float, rng: random.Random) -> list[int]:
    whole, frac = int(weight), weight - int(weight)
    return list(range(n)) * whole + sorted(rng.sample(range(n), round(n * frac)))


def _hold_out(ds, val_size: float, seed: int):
    """Split by a hash of the group: the same entity / paper / conversation never straddles the split."""
    held = [i for i, g in enumerate(ds["__group"]) if _in_validation(g, val_size, seed)]
    held_set = set(held)
    return ds.select([i for i in range(len(ds)) if i not in held_set]), ds.select(held)


def load_training_data(specs: list[DataSpec], kind: str, val_size: float = 0.0, seed: int = 42) -> TrainingData:
    """All sources of one kind -> shuffled train (weights applied) + validation datasets."""
    from datasets import Dataset, concatenate_datasets

    if not specs:
        raise MedmillError("no --data given: pass one or more dataset dirs or files (DIR[=weight])")
    if not 0 <= val_size < 1:
        raise MedmillError("--val-size must be in [0, 1)")
    rng = random.Random(seed)
    data = TrainingData(train=None, validation=None)
    train, validation = [], []
    for spec in specs:
        stats = SourceStats(str(spec.path), kind)
        if is_dataset_dir(spec.path):
            splits = _datasets_of_dir(spec.path, kind)
            stats.kind = f"dir:{detect_kind(spec.path)}"
        elif spec.path.is_file():
            rows = _rows_of_file(spec.path, kind, stats, data)
            splits = {"train": Dataset.from_list(rows)} if rows else {}
            stats.kind = "file"
        elif spec.path.is_dir():
            raise MedmillError(
                f"--data {spec.path}: a folder but not a dataset dir (no data/ with parquet shards); "
                "pass its files one by one (--data FILE) or build a dataset dir with medmill first"
            )
        else:
            raise MedmillError(f"--data {spec.path}: no such dataset dir or file")
        stats.rows = sum(len(v) for v in splits.values())
        rows_train, held = splits.get("train"), splits.get("validation")
        if rows_train is not None and held is None and val_size > 0:
            rows_train, held = _hold_out(rows_train, val_size, seed)
        if rows_train is not None and len(rows_train):
            picked = rows_train.select(_weighted_indices(len(rows_train), spec.weight, rng))
            stats.train = len(picked)
            train.append(picked)
        if held is not None and len(held):
            stats.validation = len(held)
            validation.append(held)
        data.sources.append(stats)
    if not train:
        raise MedmillError("the --data sources hold no usable training rows" + _problem_hint(data))
    data.train = _combine(concatenate_datasets, train, kind).shuffle(seed=seed).flatten_indices()
    data.validation = _combine(concatenate_datasets, validation, kind) if validation else None
    return data


def _combine(concatenate, parts: list, kind: str):
    """One dataset of the stage's columns; file-made parts are cast to the dir-made schema."""
    parts = [p.select_columns(COLUMNS[kind]) for p in parts]
    target = parts[0].features
    return concatenate([p if p.features == target else p.cast(target) for p in parts])


def _problem_hint(data: TrainingData) -> str:
    return f" (first problem: {data.problems[0]})" if data.problems else ""
