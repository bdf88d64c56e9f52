"""Is the eval set in the training data? The decontamination index (curation) is built over the eval
items (question + options) and the training dirs' records are looked up in it: a shared 13-character
n-gram, or a short question contained whole, marks the eval item as seen in training.

Each training record names the first eval item it hits, so the count is a lower bound when one record
overlaps several items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medmill.builders.curation.decontam import EvalIndex
from medmill.evaluation.mcq_data import MCQItem, option_lines
from medmill.schemas.dataset_dir import is_dataset_dir, load_splits
from medmill.schemas.errors import MedmillError

MAX_EXAMPLES = 10


def _record_texts(path: Path, skip_split: str | None) -> list[tuple[str, str]]:
    """(origin, text) of every record of a dataset dir (every split but `skip_split`)."""
    out = []
    for split, table in load_splits(path).items():
        if split == skip_split:
            continue
        cols = set(table.column_names)
        for row in table.to_pylist():
            if "messages" in cols:
                text = "\n".join(m["content"] for m in row["messages"] or [])
            elif "prompt" in cols:
                text = "\n".join(m["content"] for part in ("prompt", "chosen") for m in row[part] or [])
            else:
                text = row.get("text") or ""
            out.append((f"{path.name}:{split}:{row.get('id')}", text))
    return out


def check_overlap(items: list[MCQItem], train_dirs: list[str], work: Path, eval_dir: Path | None, eval_split: str | None) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    eval_file = work / "eval_items.jsonl"
    with open(eval_file, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps({"text": f"{item.question}\n{option_lines(item.options)}"}, ensure_ascii=False) + "\n")
    index = EvalIndex.build([eval_file], field_name="text")
    seen: dict[int, dict[str, str]] = {}
    records = 0
    for d in train_dirs:
        path = Path(d)
        if not is_dataset_dir(path):
            raise MedmillError(f"--train-dir {d}: not a medmill dataset dir")
        same = eval_dir is not None and path.resolve() == Path(eval_dir).resolve()
        texts = _record_texts(path, eval_split if same else None)
        records += len(texts)
        for m in index.matches([t for _, t in texts]):
            line = int(m.eval_origin.rsplit(":", 1)[1]) - 1
            seen.setdefault(line, {"eval": items[line].origin, "train": texts[m.index][0], "shared": m.ngram})
    return {
        "train_dirs": train_dirs,
        "train_records": records,
        "eval_items": len(items),
        "overlapping_items": len(seen),
        "overlap_share": len(seen) / len(items) if items else 0.0,
        "examples": [seen[k] for k in sorted(seen)[:MAX_EXAMPLES]],
        "overlapping_keys": [items[k].key for k in sorted(seen)],
    }
