"""Quality rules for running text (pretraining documents, book chunks): share of CJK among letters,
share of symbols and of digits, repeated lines, mean line length. Tables of numbers, tables of
contents, indexes, symbol garbage and navigation lists fail them; prose passes.

Shares are counted with one numpy lookup table over code points, not per-character Python, because
build-pt runs them over hundreds of megabytes.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from medmill.builders.core.steps import MapStep, StepResult
from medmill.builders.curation.text import record_text
from medmill.schemas import Record, RejectRow

_EXTRA_SYMBOLS = "#*|_~<>=^\\@"  # ASCII punctuation that marks markup and tables rather than prose
LETTER, CJK, DIGIT, SYMBOL, SPACE = 1, 2, 4, 8, 16


@cache
def _classes() -> np.ndarray:
    """Per BMP code point a bit set: letter, CJK, digit, symbol (Unicode S*: ±×÷→■★ ..., plus
    markup characters), whitespace. One table lookup per character instead of a regex per class."""
    table = np.zeros(0x10000, dtype=np.uint8)
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        flags = 0
        if ch.isalpha():
            flags |= LETTER
        if 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF:
            flags |= CJK | LETTER
        if ch.isdigit():
            flags |= DIGIT
        if unicodedata.category(ch).startswith("S") or ch in _EXTRA_SYMBOLS:
            flags |= SYMBOL
        if ch.isspace():
            flags |= SPACE
        table[cp] = flags
    return table


def char_class_counts(text: str) -> dict[int, int]:
    """How many characters of `text` are letters, CJK, digits, symbols, whitespace (by flag)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flags = _classes()[cps & 0xFFFF]
    astral = cps > 0xFFFF
    if astral.any():  # CJK extension B-F count as CJK letters, other astral characters as letters
        flags = flags.copy()
        flags[astral] = np.where((cps[astral] >= 0x20000) & (cps[astral] <= 0x3134F), CJK | LETTER, LETTER)
    return {f: int(np.count_nonzero(flags & f)) for f in (LETTER, CJK, DIGIT, SYMBOL, SPACE)}


def char_class_counts_many(texts: list[str]) -> list[dict[int, int]]:
    """[char_class_counts(t) for t in texts] in one numpy pass over the whole batch (one lookup and
    one segmented sum per class instead of a dozen small numpy calls per text)."""
    if not texts:
        return []
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flags = _classes()[cps & 0xFFFF]
    astral = cps > 0xFFFF
    if astral.any():
        flags[astral] = np.where((cps[astral] >= 0x20000) & (cps[astral] <= 0x3134F), CJK | LETTER, LETTER)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = np.cumsum(lengths) - lengths
    nonempty = np.flatnonzero(lengths > 0)
    per_class = {}
    for f in (LETTER, CJK, DIGIT, SYMBOL, SPACE):
        counts = np.zeros(len(texts), dtype=np.int64)
        if len(nonempty):
            counts[nonempty] = np.add.reduceat((flags & f) != 0, starts[nonempty], dtype=np.int64)
        per_class[f] = counts.tolist()
    return [{f: per_class[f][i] for f in per_class} for i in range(len(texts))]


@dataclass
class TextSignals:
    chars: int  # non-whitespace characters
    cjk_share: float  # of letters
    symbol_share: float  # of non-whitespace characters
    digit_share: float
    dup_line_share: float  # non-empty lines repeating an earlier line
    mean_line_chars: float
    lines: int


def text_signals(text: str, counts: dict[int, int] | None = None) -> TextSignals:
    """`counts`: char_class_counts(text) when already known (a batch counts them at once)."""
    counts = counts if counts is not None else char_class_counts(text)
    chars = len(text) - counts[SPACE]
    letters, cjk = counts[LETTER], counts[CJK]
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    dup = len(lines) - len(set(lines))
    return TextSignals(
        chars=chars,
        cjk_share=cjk / letters if letters else 0.0,
        symbol_share=counts[SYMBOL] / chars if chars else 0.0,
        digit_share=counts[DIGIT] / chars if chars else 0.0,
        dup_line_share=dup / len(lines) if lines else 0.0,
        mean_line_chars=sum(map(len, lines)) / len(lines) if lines else 0.0,
        lines=len(lines),
    )


@dataclass
class RunningTextConfig:
    """Thresholds; 0 turns a rule off. Line rules apply from `min_lines` non-empty lines on."""

    min_cjk_share: float = 0.2
    max_symbol_share: float = 0.2
    max_digit_share: float = 0.3
    max_dup_line_share: float = 0.3
    min_mean_line_chars: float = 8.0
    min_lines: int = 3


def check_running_text(text: str, cfg: RunningTextConfig, counts: dict[int, int] | None = None) -> tuple[str, str] | None:
    """(reason, message) of the first rule `text` fails, else None."""
    s = text_signals(text, counts)
    if cfg.min_cjk_share and s.cjk_share < cfg.min_cjk_share:
        return "low_cjk_share", f"CJK share of letters {s.cjk_share:.2f} < {cfg.min_cjk_share}"
    if cfg.max_symbol_share and s.symbol_share > cfg.max_symbol_share:
        return "symbol_share", f"symbol share {s.symbol_share:.2f} > {cfg.max_symbol_share}"
    if cfg.max_digit_share and s.digit_share > cfg.max_digit_share:
        return "digit_share", f"digit share {s.digit_share:.2f} > {cfg.max_digit_share}"
    if s.lines >= cfg.min_lines:
        if cfg.max_dup_line_share and s.dup_line_share > cfg.max_dup_line_share:
            return "repeated_lines", f"repeated line share {s.dup_line_share:.2f} > {cfg.max_dup_line_share}"
        if cfg.min_mean_line_chars and s.mean_line_chars < cfg.min_mean_line_chars:
            return "short_lines", f"mean line length {s.mean_line_chars:.1f} < {cfg.min_mean_line_chars}"
    return None


class RunningTextStep(MapStep):
    """Drops records whose text fails a running-text rule (one reject each, reason = the rule)."""

    name = "text_quality"

    def __init__(self, config: RunningTextConfig) -> None:
        self.config = config

    def __call__(self, records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        texts = [record_text(r, ["all"]) for r in records]
        for r, text, counts in zip(records, texts, char_class_counts_many(texts), strict=True):
            failed = check_running_text(text, self.config, counts)
            if failed is None:
                kept.append(r)
                continue
            reason, message = failed
            counters[f"dropped.{reason}"] += 1
            rejects.append(RejectRow(stage=self.name, reason=reason, message=message, source=r.source, raw=r.to_row()))
        return StepResult(kept, rejects, counters)

    def summary(self, counters: Counter) -> dict[str, Any]:
        return {"thresholds": dict(vars(self.config)), **dict(sorted(counters.items()))}
