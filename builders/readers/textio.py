"""Decoding and JSON sniffing shared by every reader.

Real inputs: UTF-8 with or without BOM, GB18030/GBK (Toyhom CSVs), CRLF line ends, JSON Lines hiding in
`.json` and `.txt`, one-line JSON arrays. Encodings are detected and reported, never guessed silently.
"""

from __future__ import annotations

import json
import re
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
                yield JsonItem(line=i, error=f"invalid JSON: {json_problem(e)} (column {e.colno})", raw=line[:2000])
        return
    if layout == "array":
        yield from _scan_array(text)
        return
    if layout == "object":
        try:
            yield JsonItem(line=1, value=json.loads(text))
        except json.JSONDecodeError as e:
            yield JsonItem(line=e.lineno, error=f"invalid JSON: {json_problem(e)} (line {e.lineno}, column {e.colno})")
        return
    raise MedmillError(f"{decoded.path}: not JSON or JSON Lines (first character {text.lstrip()[:1]!r})")


def json_problem(e: json.JSONDecodeError) -> str:
    """The decoder's message without its dangling " at" ("Unterminated string starting at" is
    followed by the position in str(e)); the caller adds where."""
    return e.msg.removesuffix(" starting at").removesuffix(" at")


_NEXT_ELEMENT = re.compile(r"\n([ \t]*)[{\[\"]")


def _next_element(text: str, pos: int) -> int | None:
    """Where reading resumes after a broken element starting at `pos`: the next line opening an
    element indented no deeper than this one, so the inner lines of a pretty-printed element
    (`"症状": [`) are not taken for elements of their own."""
    line_start = text.rfind("\n", 0, pos) + 1
    head = text[line_start:pos]
    indent = len(head) - len(head.lstrip(" \t"))
    for m in _NEXT_ELEMENT.finditer(text, pos + 1):
        if len(m.group(1)) <= indent:
            return m.start() + 1
    return None


def _scan_array(text: str) -> Iterator[JsonItem]:
    """The elements of a top-level JSON array, each with the line it starts on, decoded one by one.

    One pass, linear in the file size. A broken element (or a trailing comma) becomes an error item
    and reading goes on at the next line that opens an element, so one bad record never costs the
    whole file; an array that is never closed, or text after it, is reported as an error item too.
    """
    decoder = json.JSONDecoder()
    pos, n = text.index("[") + 1, len(text)
    line, counted = 1, 0  # the line of `counted`, advanced incrementally
    while True:
        while pos < n and text[pos] in " \t\n\r,":
            pos += 1
        line += text.count("\n", counted, pos)
        counted = pos
        if pos >= n:
            yield JsonItem(line=line, error="invalid JSON: the array is never closed (file cut short?)")
            return
        if text[pos] == "]":
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
            yield JsonItem(line=line, value=value)
        except json.JSONDecodeError as e:
            end = text.find("\n", pos)
            nxt = _next_element(text, pos)
            if nxt is None and e.pos >= len(text.rstrip()):
                problem = "the file ends inside this array element (cut short?)"
            else:
                problem = f"{json_problem(e)} (array element, line {e.lineno} column {e.colno})"
            yield JsonItem(line=line, error=f"invalid JSON: {problem}", raw=text[pos : end if end != -1 else n][:2000])
            if nxt is None:
                return
            pos = nxt
    rest = text[pos + 1 :]
    if rest.strip():
        extra = line + text.count("\n", counted, pos + 1 + len(rest) - len(rest.lstrip()))
        yield JsonItem(line=extra, error="invalid JSON: text after the closing ] of the array", raw=rest.strip()[:2000])


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_in(v)


def iter_corpus_texts(path: Path) -> Iterator[str]:
    """Plain texts of a corpus file (to train a tokenizer on), decoded like every build reads input:
    the string values of JSON / JSON Lines records, else the non-blank lines. A broken JSON line is
    still text and is kept as it is."""
    decoded = read_text(path)
    if sniff_json_layout(decoded.text) == "none":
        yield from (line for line in decoded.text.split("\n") if line.strip())
        return
    for item in iter_json_items(decoded):
        if item.error is not None:
            if item.raw and item.raw.strip():
                yield item.raw
        else:
            yield from _strings_in(item.value)
