"""Quality rules for running text (pretraining documents, book chunks): share of CJK among letters,
share of symbols and of digits, repeated lines, mean line length. Tables of numbers, tables of
contents, indexes, symbol garbage and navigation lists fail them; prose passes.

Shares are counted with compiled character classes (re.sub in C), not per-character Python, because
build-pt runs them over hundreds of megabytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache

from medmill.builders.pipeline import Step, StepResult
from medmill.builders.curation.text import record_text
from medmill.schemas import Record, RejectRow

_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s")
_EXTRA_SYMBOLS = "#*|_~<>=^\\@"  # ASCII punctuation that marks markup and tables rather than prose


@cache
def _symbol_class() -> re.Pattern[str]:
    """Every BMP symbol (Unicode category S*: ±×÷→■★…) plus markup characters, as one class."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if unicodedata.category(ch).startswith("S") or ch in _EXTRA_SYMBOLS:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    parts = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{parts}]")


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(text) - len(pattern.sub("", text))


@dataclass
class TextSignals:
    chars: int  # non-whitespace characters
    cjk_share: float  # of letters
    symbol_share: float  # of non-whitespace characters
    digit_share: float
    dup_line_share: float  # non-empty lines repeating an earlier line
    mean_line_chars: float
    lines: int


def text_signals(text: str) -> TextSignals:
    chars = len(text) - _count(_SPACE, text)
    letters = _count(_LETTER, text)
    cjk = _count(_CJK, text)
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    dup = len(lines) - len(set(lines))
    return TextSignals(
        chars=chars,
        cjk_share=cjk / letters if letters else 0.0,
        symbol_share=_count(_symbol_class(), text) / chars if chars else 0.0,
        digit_share=_count(_DIGIT, text) / chars if chars else 0.0,
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


def check_running_text(text: str, cfg: RunningTextConfig) -> tuple[str, str] | None:
    """(reason, message) of the first rule `text` fails, else None."""
    s = text_signals(text)
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


def running_text_step(cfg: RunningTextConfig, name: str = "text_quality") -> Step:
    """A curation step dropping records whose text fails a running-text rule (one reject each)."""

    def run(records: list[Record]) -> StepResult:
        kept, rejects, counters = [], [], Counter()
        for r in records:
            failed = check_running_text(record_text(r, ["all"]), cfg)
            if failed is None:
                kept.append(r)
                continue
            reason, message = failed
            counters[f"dropped.{reason}"] += 1
            rejects.append(RejectRow(stage=name, reason=reason, message=message, source=r.source, raw=r.to_row()))
        stats = {"thresholds": {k: v for k, v in vars(cfg).items()}, **dict(sorted(counters.items()))}
        return StepResult(kept, rejects, counters, stats)

    return Step(name, run)
