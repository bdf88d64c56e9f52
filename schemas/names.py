"""File names that are not valid UTF-8 (a GBK name from a Windows zip) reach Python as `str` with lone
surrogates (os.fsdecode's surrogateescape); such text cannot be written as UTF-8. Every name that goes
into a manifest, reject row, card or shard passes through `printable_name`: undecodable bytes become a
readable escape (`\\xb8\\xd0`), valid text is unchanged, and the result always encodes."""

from __future__ import annotations

import json
import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    return bool(_SURROGATE.search(text))


def printable_name(text: str) -> str:
    """`text` with every lone surrogate turned into a backslash escape of the byte (or code point) it stands for."""
    if not has_surrogates(text):
        return text
    return _SURROGATE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: one undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable_json(text: str) -> str:
    """JSON text (dumped with ensure_ascii=False) with lone surrogates replaced by their printable form,
    escaped for JSON so the line still parses."""
    if not has_surrogates(text):
        return text
    return _SURROGATE.sub(lambda m: json.dumps(_escape(m))[1:-1], text)


def printable_value(value: object) -> object:
    """`value` (JSON-like: dicts, lists, strings) with `printable_name` applied to every string and key."""
    if isinstance(value, str):
        return printable_name(value)
    if isinstance(value, dict):
        return {printable_name(k) if isinstance(k, str) else k: printable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_value(v) for v in value]
    return value
