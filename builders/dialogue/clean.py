"""Cleaning one conversation: whitespace, templated openers and sign-offs, anonymisation tokens,
placeholder asks, role order, empty / one-character turns, length bounds, language.

Every change is a named counter and every refusal a reason code, so the build can say per input
file what cleaning did. Pure functions over (role, text) turns; no I/O besides loading the lexicon.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from medmill.builders.dialogue.config import CleanConfig
from medmill.builders.text.cjk import cjk_share
from medmill.schemas.errors import MedmillError

Turn = tuple[str, str]

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_CJK = "\u3400-\u9fff\uf900-\ufaff"
_FULLWIDTH_NEAR_CJK = re.compile(f"(?<=[{_CJK}，。；：、！？）”])\u3000+|\u3000+(?=[{_CJK}（“])")
_SPACES = re.compile("[ \t\u3000\xa0]+")
_BLANK_LINES = re.compile(r"\n\s*\n(?:\s*\n)+")
_LEADING_PUNCT = re.compile(r"^[\s，,、；;：:。.！!]+")
LANGUAGE_SAMPLE_CHARS = 120  # enough to tell zh from en; text.cjk.cjk_share walks characters in Python
_SIGNOFF_WINDOW = 240


@dataclass(frozen=True)
class Lexicon:
    """Compiled patterns of lexicon.yaml (or the user's own file of the same shape)."""

    version: str
    openers: tuple[re.Pattern, ...]
    signoffs: tuple[re.Pattern, ...]
    anonymisation: re.Pattern | None
    placeholders: re.Pattern | None
    speaker_labels: re.Pattern | None

    @staticmethod
    def load(path: Path | None = None) -> Lexicon:
        return _load(str(path) if path else None)


@lru_cache(maxsize=4)
def _load(path: str | None) -> Lexicon:
    try:
        if path is None:
            text = resources.files("medmill.builders.dialogue").joinpath("lexicon.yaml").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError("expected a mapping with openers / signoffs / anonymisation / placeholders")

        def many(key: str) -> list[str]:
            values = data.get(key) or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{key!r} must be a list of strings")
            return values

        def alternation(values: list[str], whole: bool = False) -> re.Pattern | None:
            if not values:
                return None
            body = "|".join(f"(?:{v})" for v in values)
            return re.compile(f"^(?:{body})$" if whole else body, re.IGNORECASE)

        return Lexicon(
            version=str(data.get("version", "0")),
            openers=tuple(re.compile(p, re.IGNORECASE) for p in many("openers")),
            signoffs=tuple(re.compile(p, re.IGNORECASE) for p in many("signoffs")),
            anonymisation=alternation(many("anonymisation")),
            placeholders=alternation(many("placeholders"), whole=True),
            speaker_labels=alternation(many("speaker_labels")),
        )
    except (OSError, yaml.YAMLError, ValueError, re.error) as e:
        raise MedmillError(f"cannot load dialogue lexicon {path or 'lexicon.yaml'}: {e}") from None


@dataclass
class Cleaned:
    """The cleaned turns, or `reason` + `message` saying why the conversation is refused."""

    turns: list[Turn]
    counts: Counter
    reason: str | None = None
    message: str = ""


def visible_len(text: str) -> int:
    """Characters without whitespace (str.split runs in C: this is on the hot path of every turn)."""
    return sum(map(len, text.split()))


def normalise_whitespace(text: str, counts: Counter) -> str:
    """Full-width spaces next to Chinese text go, other runs of spaces become one, lines are trimmed."""
    if "\u3000" in text:
        counts["fullwidth_spaces"] += text.count("\u3000")
        text = _FULLWIDTH_NEAR_CJK.sub("", text)
    if _ZERO_WIDTH.search(text):
        counts["zero_width_chars"] += len(_ZERO_WIDTH.findall(text))
        text = _ZERO_WIDTH.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    out = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    if out != text:
        counts["whitespace_fixed"] += 1
    return out


def strip_templates(text: str, lexicon: Lexicon, counts: Counter) -> str:
    """Take openers off the start and sign-offs off the end of a doctor turn, as long as any match."""
    changed = True
    while changed and text:
        changed = False
        for pattern in lexicon.openers:
            m = pattern.match(text)
            if m and m.end() > 0:
                text = _LEADING_PUNCT.sub("", text[m.end():])
                counts["openers_stripped"] += 1
                changed = True
                break
    changed = True
    while changed and text:
        changed = False
        cut = max(0, len(text) - _SIGNOFF_WINDOW)  # sign-offs are short: search the tail only
        for pattern in lexicon.signoffs:
            m = pattern.search(text, cut)
            if m:
                text = text[: m.start()].rstrip(" \t\n，,、；;")
                counts["signoffs_stripped"] += 1
                changed = True
                break
    return text


def remove_anonymisation(text: str, lexicon: Lexicon, counts: Counter) -> str:
    if lexicon.anonymisation is None:
        return text
    out, n = lexicon.anonymisation.subn("", text)
    if n:
        counts["anonymisation_tokens"] += n
        out = re.sub(r"[ \t]{2,}", " ", out)
        out = re.sub(r"\s+([,.!?;:，。！？；：])", r"\1", out).strip()
    return out


def cut_speaker_label(text: str, lexicon: Lexicon, counts: Counter) -> str:
    """A doctor turn that runs on into "Patient: …" is cut where the invented patient turn begins."""
    if lexicon.speaker_labels is None:
        return text
    m = lexicon.speaker_labels.search(text)
    if m is None or m.start() == 0:
        return text
    counts["runon_turns_cut"] += 1
    return text[: m.start()].rstrip()


def repair_roles(turns: list[Turn], counts: Counter) -> tuple[list[Turn], str | None]:
    """Leading system turn, then user/assistant alternating from user and ending on assistant.

    Repairs: consecutive turns of one role are joined; doctor turns before the first patient turn and
    a patient turn after the last doctor turn are dropped (counted). A system turn anywhere but first
    cannot be repaired and refuses the conversation."""
    system: list[Turn] = []
    body = list(turns)
    if body and body[0][0] == "system":
        system, body = [body[0]], body[1:]
    if any(role == "system" for role, _ in body):
        return [], "a system turn after the first turn"
    merged: list[Turn] = []
    for role, text in body:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n{text}")
            counts["same_role_turns_joined"] += 1
        else:
            merged.append((role, text))
    while merged and merged[0][0] == "assistant":
        merged.pop(0)
        counts["leading_doctor_turns_dropped"] += 1
    if merged and merged[-1][0] == "user":
        merged.pop()
        counts["trailing_patient_turns_dropped"] += 1
    if not merged:
        return [], "no patient turn followed by a doctor turn"
    return system + merged, None


def language_of(turns: list[Turn]) -> str:
    """zh or en from the share of Chinese among the letters of the first 120 characters."""
    sample = "".join(t for r, t in turns if r != "system")[:LANGUAGE_SAMPLE_CHARS]
    return "zh" if cjk_share(sample, no_letters=1.0) >= 0.3 else "en"


def clean_turns(turns: list[Turn], cfg: CleanConfig, lexicon: Lexicon) -> Cleaned:
    """Clean one conversation; language is checked by the caller, who knows the file's language."""
    counts: Counter = Counter()

    def refuse(reason: str, message: str) -> Cleaned:
        return Cleaned([], counts, reason, message)

    cleaned: list[Turn] = []
    for i, (role, text) in enumerate(turns, start=1):
        text = normalise_whitespace(text, counts)
        text = remove_anonymisation(text, lexicon, counts)
        if role == "assistant":
            text = cut_speaker_label(text, lexicon, counts)
            if cfg.strip_templates:
                before = text
                text = strip_templates(text, lexicon, counts)
                if before and not text:
                    return refuse("template_only", f"turn {i} is nothing but a templated greeting or sign-off")
        if role == "user" and lexicon.placeholders is not None and lexicon.placeholders.match(text.strip()):
            return refuse("placeholder_ask", f"turn {i} asks nothing: {text.strip()[:20]!r}")
        if not text:
            return refuse("empty_turn", f"turn {i} ({role}) is empty")
        if role != "system" and visible_len(text) == 1:
            return refuse("one_char_turn", f"turn {i} ({role}) is one character: {text!r}")
        cleaned.append((role, text))
    repaired, problem = repair_roles(cleaned, counts)
    if problem:
        return refuse("bad_role_order", problem)
    for i, (role, text) in enumerate(repaired, start=1):
        if role != "system" and visible_len(text) < cfg.min_chars:
            return refuse("too_short", f"turn {i} ({role}) has {visible_len(text)} characters, below --min-chars {cfg.min_chars}")
    total = sum(visible_len(t) for r, t in repaired if r != "system")
    if total > cfg.max_chars:
        return refuse("too_long", f"{total} characters, above --max-chars {cfg.max_chars}")
    return Cleaned(repaired, counts)
