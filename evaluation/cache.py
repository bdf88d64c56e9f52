"""Per-item results on disk, one JSON line each, written as soon as a batch is done: a killed run,
re-run with the same command, scores only the items it has not scored yet."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_fingerprint(path: str) -> str:
    """Path plus the size and mtime of its weight/config files: a retrained checkpoint in the same dir is a
    new model, not a cache hit."""
    p = Path(path)
    files = sorted(f for f in p.glob("*") if f.suffix in (".safetensors", ".bin", ".json") and f.is_file()) if p.is_dir() else []
    return fingerprint(str(p.resolve()), [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files])


def slug(text: str) -> str:
    name = Path(text.rstrip("/")).name or "model"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40]


class ItemCache:
    """`<out>/items/<task>/<model>/<data>-<fingerprint>.jsonl`: {"key": ..., **result} per line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            damaged = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    damaged = True  # a line cut by a kill: that item is scored again
                    continue
                if isinstance(row, dict) and "key" in row:
                    self.done[row["key"]] = row
            if damaged:  # rewrite without the broken tail, or the next append would glue onto it
                self.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.done.values()), encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def add(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.done[row["key"]] = row
            fh.flush()

    def rows(self, keys: list[str]) -> list[dict[str, Any]]:
        return [self.done[k] for k in keys if k in self.done]


def item_cache(out: Path, task: str, model: str, data: str, *settings: Any) -> ItemCache:
    name = f"{slug(data)}-{fingerprint(str(Path(data).resolve()), *settings)}.jsonl"
    return ItemCache(Path(out) / "items" / task / f"{slug(model)}-{model_fingerprint(model)}" / name)
