"""Plain texts out of dataset dirs and text files, for training a tokenizer (init-model)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from medmill.schemas.dataset_dir import is_dataset_dir, load_splits
from medmill.schemas.errors import MedmillError

TextFileReader = Callable[[Path], Iterator[str]]


def utf8_lines(path: Path) -> Iterator[str]:
    """Non-blank lines of a UTF-8 file; anything else is a one-line error, never replacement characters."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MedmillError(f"corpus {path} is not UTF-8 (byte {e.start}); convert it to UTF-8") from None
    yield from (line for line in text.replace("\r\n", "\n").split("\n") if line.strip())


def iter_texts(paths: list[Path], read_file: TextFileReader | None = None) -> Iterator[str]:
    """Message contents / pretrain texts of dataset dirs; texts of any other file by `read_file`
    (the command passes the builds' reader, which detects GBK/GB18030 and reads JSON Lines; trainers
    never import builders), by default its UTF-8 lines."""
    for path in paths:
        path = Path(path)
        if is_dataset_dir(path):
            for table in load_splits(path).values():
                yield from _texts_of_table(table)
        elif path.is_file():
            yield from (read_file or utf8_lines)(path)
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
