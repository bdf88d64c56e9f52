"""Character normalisation that is safe for Chinese running text.

NFKC would rewrite the full-width punctuation Chinese text is typeset with (，。：；！？（）) into
ASCII, so it is not used. Instead: NFC (composed forms), full-width ASCII letters and digits
(Ａ１) to half-width, and control characters out. Traditional -> Simplified (`t2s`) goes through
an OpenCC package (the `t2s` extra), loaded only when asked for.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import cache

from medmill.schemas.errors import MedmillError

_FULLWIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")  # keeps \t \n \f (page breaks matter to cleaning)


def _halfwidth(m: re.Match[str]) -> str:
    return chr(ord(m.group(0)) - 0xFEE0)


def normalise_text(text: str, counts: Counter | None = None) -> str:
    """NFC, full-width letters/digits to ASCII, control characters removed; punctuation untouched."""
    counts = counts if counts is not None else Counter()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
        text, n = _FULLWIDTH_ALNUM.subn(_halfwidth, text)
        counts["fullwidth_alnum"] += n
    text, n = _CONTROL.subn("", text)
    counts["control_chars"] += n
    return text


@cache
def _opencc():
    try:
        import opencc
    except ImportError:
        raise MedmillError("--t2s needs OpenCC: pip install 'medmill[t2s]'") from None
    return opencc.OpenCC("t2s")


class T2S:
    """Traditional -> Simplified Chinese with OpenCC's t2s profile; counts changed characters."""

    def __init__(self) -> None:
        self.converter = _opencc()

    def __call__(self, text: str, counts: Counter | None = None) -> str:
        if text.isascii():
            return text
        out = self.converter.convert(text)
        if counts is not None and out != text:
            counts["t2s_chars"] += sum(a != b for a, b in zip(out, text, strict=False))
        return out


_SPACE_RUN = re.compile("[ \t\u3000\xa0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def tidy_whitespace(text: str, counts: Counter | None = None) -> str:
    """For texts that skip cleaning (rendered records, dataset rows): full-width and no-break spaces
    become one ASCII space, runs collapse, lines are stripped, blank-line runs shrink to one."""
    if counts is not None:
        counts["fullwidth_spaces"] += text.count("\u3000")
    lines = [_SPACE_RUN.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
