"""Export dataset dirs to the JSON Lines formats other trainers read.

Formats (../shared/research/trainers.md §2, formats.md §5):
- sft: `sharegpt` / `medicalgpt` {"conversations": [{"from", "value"}]} (system as a leading
  "system" turn, as MedicalGPT accepts), `llamafactory` (sharegpt with a separate `system` column and
  a dataset_info.json entry), `alpaca` {"instruction", "input", "output", "system", "history"},
  `openai` {"messages": [{"role", "content"}]}.
- preference: `medicalgpt` {"conversations", "chosen": str, "rejected": str}, `medicalgpt-legacy`
  {"question", "response_chosen", "response_rejected"} (single-turn only), `llamafactory` /
  `sharegpt` (ranking: chosen / rejected as {"from": "gpt", "value"} objects), `alpaca`
  {"instruction", "input", "chosen", "rejected"}, `openai` (preference fine-tuning:
  {"input": {"messages"}, "preferred_output", "non_preferred_output"}).
- pretrain: every format writes {"text"}; `llamafactory` adds its dataset_info.json entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmill.schemas.dataset_dir import detect_kind, iter_rows, split_files
from medmill.schemas.errors import MedmillError

SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


class Skip(Exception):
    """A record this format cannot express; counted by reason, never written half-converted."""


Row = dict[str, Any]
Converter = Callable[[Row], Row]


def _sharegpt(messages: list[Row], keep_system: bool = True) -> list[Row]:
    return [
        {"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]}
        for m in messages
        if keep_system or m["role"] != "system"
    ]


def _system(messages: list[Row]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "system")


def _text(messages: list[Row]) -> str:
    """An answer side (one or more assistant messages) as one string."""
    return "\n".join(m["content"] for m in messages)


def _pairs(body: list[Row]) -> list[tuple[str, str]]:
    """(user, assistant) pairs of alternating turns without the system message."""
    return [(body[i]["content"], body[i + 1]["content"]) for i in range(0, len(body) - 1, 2)]


# --- sft ---------------------------------------------------------------------------------------


def sft_sharegpt(row: Row) -> Row:
    return {"conversations": _sharegpt(row["messages"])}


def sft_llamafactory(row: Row) -> Row:
    out: Row = {"conversations": _sharegpt(row["messages"], keep_system=False)}
    out["system"] = _system(row["messages"])
    return out


def sft_alpaca(row: Row) -> Row:
    body = [m for m in row["messages"] if m["role"] != "system"]
    pairs = _pairs(body)
    instruction, output = pairs[-1]
    return {
        "instruction": instruction,
        "input": "",
        "output": output,
        "system": _system(row["messages"]),
        "history": [list(p) for p in pairs[:-1]],
    }


def sft_openai(row: Row) -> Row:
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]}


# --- preference --------------------------------------------------------------------------------


def pref_medicalgpt(row: Row) -> Row:
    return {"conversations": _sharegpt(row["prompt"]), "chosen": _text(row["chosen"]), "rejected": _text(row["rejected"])}


def pref_medicalgpt_legacy(row: Row) -> Row:
    prompt = row["prompt"]
    if len(prompt) != 1 or prompt[0]["role"] != "user":
        raise Skip("multi_turn_or_system_prompt")
    return {
        "question": prompt[0]["content"],
        "response_chosen": _text(row["chosen"]),
        "response_rejected": _text(row["rejected"]),
    }


def pref_llamafactory(row: Row) -> Row:
    return {
        "conversations": _sharegpt(row["prompt"], keep_system=False),
        "chosen": {"from": "gpt", "value": _text(row["chosen"])},
        "rejected": {"from": "gpt", "value": _text(row["rejected"])},
        "system": _system(row["prompt"]),
    }


def pref_alpaca(row: Row) -> Row:
    body = [m for m in row["prompt"] if m["role"] != "system"]
    if len(body) != 1:
        raise Skip("multi_turn_prompt")
    return {
        "instruction": body[0]["content"],
        "input": "",
        "chosen": _text(row["chosen"]),
        "rejected": _text(row["rejected"]),
        "system": _system(row["prompt"]),
    }


def pref_openai(row: Row) -> Row:
    def msgs(side: list[Row]) -> list[Row]:
        return [{"role": m["role"], "content": m["content"]} for m in side]

    return {
        "input": {"messages": msgs(row["prompt"])},
        "preferred_output": msgs(row["chosen"]),
        "non_preferred_output": msgs(row["rejected"]),
    }


# --- pretrain ----------------------------------------------------------------------------------


def pretrain_text(row: Row) -> Row:
    return {"text": row["text"]}


CONVERTERS: dict[str, dict[str, Converter]] = {
    "sft": {
        "sharegpt": sft_sharegpt,
        "medicalgpt": sft_sharegpt,
        "llamafactory": sft_llamafactory,
        "alpaca": sft_alpaca,
        "openai": sft_openai,
    },
    "preference": {
        "medicalgpt": pref_medicalgpt,
        "medicalgpt-legacy": pref_medicalgpt_legacy,
        "llamafactory": pref_llamafactory,
        "sharegpt": pref_llamafactory,
        "alpaca": pref_alpaca,
        "openai": pref_openai,
    },
    "pretrain": {"text": pretrain_text, "medicalgpt": pretrain_text, "llamafactory": pretrain_text},
}
FORMATS = sorted({f for per_kind in CONVERTERS.values() for f in per_kind})


def llamafactory_entry(kind: str, file_name: str) -> Row:
    """The dataset_info.json entry LLaMA-Factory needs to find and parse the exported file."""
    if kind == "pretrain":
        return {"file_name": file_name, "columns": {"prompt": "text"}}
    entry: Row = {"file_name": file_name, "formatting": "sharegpt"}
    if kind == "preference":
        entry["ranking"] = True
        entry["columns"] = {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system"}
    else:
        entry["columns"] = {"messages": "conversations", "system": "system"}
    entry["tags"] = {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "system_tag": "system",
    }
    return entry


@dataclass
class ExportResult:
    kind: str
    format: str
    files: dict[str, int] = field(default_factory=dict)  # path -> rows written
    splits: list[str] = field(default_factory=list)  # the splits written
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    dataset_info: Path | None = None

    @property
    def written(self) -> int:
        return sum(self.files.values())


def _atomic_jsonl(path: Path, rows: Iterator[Row]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def _targets(src: Path, out: Path, split: str | None) -> dict[Path, list[str]]:
    """Output file -> splits it holds. A .jsonl/.json `out` is one file; anything else a folder."""
    available = list(split_files(src))
    if split is not None and split != "all" and split not in available:
        raise MedmillError(f"{src} has no split {split!r} (it has {', '.join(available)})")
    if out.suffix in (".jsonl", ".json"):
        if split == "all":
            return {out: available}
        return {out: [split or ("train" if "train" in available else available[0])]}
    chosen = available if split in (None, "all") else [split]
    return {out / f"{s}.jsonl": [s] for s in chosen}


def export_dir(src: Path, fmt: str, out: Path, split: str | None = None, name: str | None = None) -> ExportResult:
    """Write `src`'s records in `fmt` to `out` (a .jsonl file or a folder of {split}.jsonl)."""
    src, out = Path(src), Path(out)
    kind = detect_kind(src)
    converters = CONVERTERS[kind]
    if fmt not in converters:
        raise MedmillError(f"format {fmt!r} does not apply to {kind} dirs; use one of: {', '.join(sorted(converters))}")
    convert = converters[fmt]
    result = ExportResult(kind=kind, format=fmt)

    def rows(splits: list[str]) -> Iterator[Row]:
        for s in splits:
            for _split, _file, _i, row in iter_rows(src, s):
                try:
                    yield convert(row)
                except Skip as e:
                    result.skipped[str(e)] += 1

    try:
        for path, splits in _targets(src, out, split).items():
            result.files[str(path)] = _atomic_jsonl(path, rows(splits))
            result.splits += splits
        if fmt == "llamafactory":
            result.dataset_info = _write_dataset_info(kind, result.files, name or src.resolve().name)
    except OSError as e:  # an unwritable or mistyped --out: one line, not a traceback
        raise MedmillError(f"cannot write the export to {out}: {e.strerror or e}") from None
    return result


def _write_dataset_info(kind: str, files: dict[str, int], name: str) -> Path:
    """Add (or replace) this export's entries in dataset_info.json beside the exported files."""
    first = Path(next(iter(files)))
    info_path = first.parent / "dataset_info.json"
    info: Row = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise MedmillError(f"{info_path} exists but is not valid JSON ({e}); fix or remove it") from None
    for path in files:
        p = Path(path)
        key = name if len(files) == 1 else f"{name}_{p.stem}"
        info[key] = llamafactory_entry(kind, p.name)
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return info_path
