"""Plain texts out of dataset dirs and text files, for training a tokenizer (init-model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmill.schemas.dataset_dir import is_dataset_dir, load_splits
from medmill.schemas.errors import MedmillError


def iter_texts(paths: list[Path]) -> Iterator[str]:
    """Message contents / pretrain texts of dataset dirs; lines of any other text file."""
    for path in paths:
        path = Path(path)
        if is_dataset_dir(path):
            for table in load_splits(path).values():
                yield from _texts_of_table(table)
        elif path.is_file():
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.strip():
                        yield line.rstrip("\n")
        else:
            raise MedmillError(f"corpus {path} is neither a medmill dataset dir nor a text file")


def _texts_of_table(table) -> Iterator[str]:
    names = set(table.column_names)
    if "text" in names:
        yield from (t for t in table.column("text").to_pylist() if t)
    for col in ("messages", "prompt", "chosen", "rejected"):
        if col in names:
            for messages in table.column(col).to_pylist():
                for m in messages or []:
                    if m and m.get("content"):
                        yield m["content"]
