"""Decoding and JSON sniffing shared by every reader.

Real inputs: UTF-8 with or without BOM, GB18030/GBK (Toyhom CSVs), CRLF line ends, JSON Lines hiding in
`.json` and `.txt`, one-line JSON arrays. Encodings are detected and reported, never guessed silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medmill.schemas.errors import MedmillError

ENCODINGS = ("utf-8-sig", "utf-8", "gb18030")


def detect_encoding(data: bytes) -> str:
    """Return 'utf-8-sig', 'utf-8' or 'gb18030'; raise MedmillError when none decodes the bytes."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            data[3:].decode("utf-8")
            return "utf-8-sig"
        except UnicodeDecodeError:
            pass
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as e:
        utf8_error = e
    try:
        data.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        raise MedmillError(
            f"cannot decode as utf-8 (byte {utf8_error.start}) or gb18030; convert the file to UTF-8"
        ) from None


@dataclass
class DecodedText:
    path: Path
    text: str
    encoding: str


def read_text(path: Path) -> DecodedText:
    """Read a whole file, detect its encoding, normalise CRLF/CR to LF."""
    path = Path(path)
    if not path.exists():
        raise MedmillError(f"no such file: {path}")
    if path.is_dir():
        raise MedmillError(f"{path} is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MedmillError(f"cannot read {path}: {e.strerror}") from None
    try:
        encoding = detect_encoding(data)
    except MedmillError as e:
        raise MedmillError(f"{path}: {e}") from None
    text = data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    return DecodedText(path, text, encoding)


@dataclass
class JsonItem:
    """One JSON value read from a file: `value` is set, or `error` says why the line failed."""

    line: int
    value: Any = None
    error: str | None = None
    raw: str | None = None


def sniff_json_layout(text: str) -> str:
    """'array', 'object', 'lines' or 'none', from content: the first non-space character and a parse try."""
    stripped = text.lstrip()
    if not stripped:
        return "none"
    head = stripped[0]
    if head == "[":
        return "array"
    if head == "{":
        # a single object spanning the file, or JSON Lines of objects
        first_line = stripped.split("\n", 1)[0].strip()
        try:
            json.loads(first_line)
            return "lines"
        except json.JSONDecodeError:
            pass
        try:
            json.loads(stripped)
            return "object"
        except json.JSONDecodeError:
            return "lines"
    return "none"


def iter_json_items(decoded: DecodedText) -> Iterator[JsonItem]:
    """Yield JSON values of a JSON array / object / JSON Lines file with 1-based line numbers.

    Array elements get the line on which they start; a broken array or object file yields one error item.
    """
    text = decoded.text
    layout = sniff_json_layout(text)
    if layout == "lines":
        for i, line in enumerate(text.split("\n"), start=1):
            s = line.strip()
            if not s:
                continue
            try:
                yield JsonItem(line=i, value=json.loads(s))
            except json.JSONDecodeError as e:
                yield JsonItem(line=i, error=f"invalid JSON: {e.msg} at column {e.colno}", raw=line[:2000])
        return
    if layout in ("array", "object"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            yield JsonItem(line=e.lineno, error=f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}")
            return
        if isinstance(data, list):
            starts = _element_lines(text, len(data))
            for idx, value in enumerate(data):
                yield JsonItem(line=starts[idx] if idx < len(starts) else 1, value=value)
        else:
            yield JsonItem(line=1, value=data)
        return
    raise MedmillError(f"{decoded.path}: not JSON or JSON Lines (first character {text.lstrip()[:1]!r})")


def _element_lines(text: str, count: int) -> list[int]:
    """Line on which each top-level array element starts (cheap scan with a JSON decoder)."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    pos = text.index("[") + 1
    n = len(text)
    line, counted_to = 1, 0  # newlines are counted incrementally: linear in the file size
    while len(lines) < count and pos < n:
        while pos < n and text[pos] in " \t\n\r,":
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        lines.append(line)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
    return lines
