"""Quality rules for one record: boilerplate stripping, then length, repetition, garble, placeholder,
CJK share and answer-equals-question checks. Each rule has a reason code that appears in rejects
and counters, so a user can see which rule removed what.

"Answer" texts are what a model learns to produce (assistant turns, chosen/rejected, pretrain text);
"question" texts are user turns and prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from medmill.builders.curation.char_checks import (
    CharBatch,
    by_chunks,
    char_table,
    count_in,
    distinct_windows_at_least,
    line_break_table,
    space_table,
)
from medmill.builders.curation.minhash import clean_folded, clean_for_shingles
from medmill.builders.curation.text import TextView, rewrite
from medmill.builders.text.cjk import cjk_share, is_cjk
from medmill.builders.text.fold import nfkc_lower_many
from medmill.builders.text.meta_talk import meta_talk
from medmill.schemas import PreferenceRecord, PretrainRecord, Record, SFTRecord
from medmill.schemas.errors import MedmillError

PLACEHOLDERS = {
    "无", "暂无", "没有", "空", "略", "同上", "见上", "不详", "未知", "待补充", "待定", "测试", "test", "n/a", "na",
    "none", "null", "nan", "nil", "undefined", "todo", "tbd", "...", "…", "……", "-", "--", "?", "？", "0",
}
_PLACEHOLDER_STRIP = re.compile(r"[\s。.，,！!；;：:\"'“”]+")
_PLACEHOLDER_MAX = max(map(len, PLACEHOLDERS))
_PLACEHOLDER_PREFIX = 32  # a text whose first characters already hold more than that is no placeholder

# mojibake: UTF-8 read as Latin-1/cp1252 (Ã©, â€™), GBK/UTF-8 swaps (锟斤拷, 烫烫烫), escaped bytes
_LATIN_MOJIBAKE = re.compile(
    "[\u00c2-\u00ef][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
)
_ESCAPED_BYTES = re.compile(r"\\x[89a-f][0-9a-f]", re.I)
_GBK_MARKERS = ("锟斤拷", "烫烫烫", "屯屯屯", "ï»¿")
_CONTROL_OR_PRIVATE = re.compile("[\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f]")
_TAIL = 120  # sign-offs are looked for in the last characters only


# every signal above starts with one of these characters: a text without any has none
_GARBLE_START = re.compile("[\ufffd\u00c2-\u00ef\\\\锟烫屯\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f]")


def garble_signals(text: str) -> int:
    """How many mojibake signals a text holds (0 for clean text)."""
    if _GARBLE_START.search(text) is None:
        return 0
    n = text.count("\ufffd") + len(_LATIN_MOJIBAKE.findall(text)) + len(_ESCAPED_BYTES.findall(text))
    n += sum(text.count(m) * 3 for m in _GBK_MARKERS)
    n += len(_CONTROL_OR_PRIVATE.findall(text))
    return n


def repeated_ngram_ratio(text: str, n: int = 10) -> float:
    """Share of character n-gram occurrences that repeat an earlier one (degenerate loops -> near 1)."""
    compact = "".join(text.split())
    total = len(compact) - n + 1
    if total < 2 * n:
        return 0.0
    return 1.0 - len({compact[i : i + n] for i in range(total)}) / total


def repeated_ngram_ratio_above(text: str, limit: float, n: int = 10) -> float | None:
    """repeated_ngram_ratio(text, n) when it is above `limit`, else None; most texts are settled
    without building the n-gram set: n-grams starting with different characters differ, so the
    distinct characters at n-gram starts bound the distinct n-grams from below, and the ratio from above."""
    compact = "".join(text.split())
    total = len(compact) - n + 1
    if total < 2 * n:
        return None if 0.0 <= limit else 0.0
    if 1.0 - len(set(compact[:total])) / total <= limit:
        return None
    ratio = 1.0 - len({compact[i : i + n] for i in range(total)}) / total
    return ratio if ratio > limit else None


def repeated_line_ratio(text: str) -> float:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 3:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


@dataclass
class Boilerplate:
    openers: list[re.Pattern[str]] = field(default_factory=list)
    closers: list[re.Pattern[str]] = field(default_factory=list)
    drop: list[re.Pattern[str]] = field(default_factory=list)
    version: str = "0"

    @classmethod
    def load(cls, path: Path | None = None) -> Boilerplate:
        if path is None:
            with resources.as_file(resources.files("medmill.builders.curation") / "lexicons" / "boilerplate.yaml") as p:
                return cls.load(p)
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            return cls(
                openers=[re.compile(p, re.I) for p in data.get("openers") or []],
                closers=[re.compile(p, re.I) for p in data.get("closers") or []],
                drop=[re.compile(p, re.I) for p in [*meta_talk().ai_self, *(data.get("drop") or [])]],
                version=str(data.get("version", "0")),
            )
        except (OSError, yaml.YAMLError, re.error, AttributeError) as e:
            raise MedmillError(f"cannot load boilerplate patterns {path}: {e}") from None

    def _gates(self) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None, re.Pattern[str] | None]:
        """One combined pattern per list (opener, closer, drop), found where any of the list is found;
        a text none matches skips the list. Rebuilt when the lists are replaced or changed."""
        cached = self.__dict__.get("_gate_cache")
        if cached is None or cached[0] != self.openers or cached[1] != self.closers or cached[2] != self.drop:
            lists = (list(self.openers), list(self.closers), list(self.drop))
            cached = (*lists, tuple(_any_of(tuple(_searched_core(p) for p in ps)) for ps in lists))
            self.__dict__["_gate_cache"] = cached
        return cached[3]

    def strip(self, text: str) -> str:
        """Remove openers and (repeatedly) closers; returns the text unchanged when nothing matched."""
        out = text.strip()
        any_opener, any_closer, _ = self._gates()
        if (any_opener is not None and any_opener.search(out) is None
                and any_closer is not None and any_closer.search(out[-_TAIL:]) is None):
            return text  # no opener and no closer anywhere: nothing would change
        changed = True
        while changed and out:
            changed = False
            for p in self.openers:
                new = p.sub("", out, count=1).lstrip()
                if new != out:
                    out, changed = new, True
        head, tail = out[:-_TAIL], out[-_TAIL:]
        changed = True
        while changed and tail:
            changed = False
            for p in self.closers:
                new = p.sub("", tail, count=1).rstrip()
                if new != tail:
                    tail, changed = new, True
        out = (head + tail).rstrip()
        if out == text.strip():
            return text
        if out and out[-1] not in "。.！!？?）)」』】”\"…~":
            out += "。" if is_cjk(out[-1]) else "."
        return out

    def should_drop(self, text: str) -> str | None:
        any_drop = self._gates()[2]
        if any_drop is not None and any_drop.search(text) is None:
            return None
        return next((p.pattern for p in self.drop if p.search(text)), None)


# a leading run of one character class (`[，,。.\s]*`, `\s*`, `.*?`): it may match nothing, so a search
# tries the pattern at every position (~50 ns each); without it the engine skips to the characters
# the rest can start with
_LEADING_RUN = re.compile(r"(?:\[(?:\\.|[^\]\\])+\]|\\[sSwWdD]|\.)\*[?+]?")


def _searched_core(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """For a search gate: `pattern` without a leading run of one character class. Wherever the pattern
    matches, the rest matches where the run ends, so the core is found wherever the pattern is (it may
    be found where the pattern is not: a gate only decides which texts get the exact patterns)."""
    if not isinstance(pattern.pattern, str):
        return pattern
    lead = _LEADING_RUN.match(pattern.pattern)
    rest = pattern.pattern[lead.end() :] if lead else ""
    if not rest:  # (a top-level | is fine: `[x]*A|B` is found exactly where `A|B` is)
        return pattern
    try:
        core = re.compile(rest, pattern.flags)
    except re.error:
        return pattern
    return core if not core.groups and not pattern.groups else pattern


def _any_of(patterns: tuple[re.Pattern[str], ...]) -> re.Pattern[str] | None:
    """`(?:p1)|(?:p2)|...`: it matches at a position exactly when one of the patterns does, given one
    set of flags, no groups (a group number would shift) and no verbose mode (a comment would eat the
    closing parenthesis); else None (no gate: every pattern is tried)."""
    if not patterns or any(not isinstance(p.pattern, str) or p.groups for p in patterns):
        return None
    flags = {p.flags for p in patterns}
    if len(flags) != 1:
        return None
    flag = flags.pop()
    if flag & re.VERBOSE:
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), flag)
    except re.error:
        return None


@dataclass
class QualityConfig:
    min_chars: int = 2
    max_chars: int = 50_000
    min_cjk_share: float = 0.0
    max_repeated_ngram_ratio: float = 0.5
    max_repeated_line_ratio: float = 0.3
    max_garble_signals: int = 2
    strip_boilerplate: bool = True


@dataclass
class QualityVerdict:
    record: Record | None
    reason: str = ""
    message: str = ""
    touched: Counter = field(default_factory=Counter)


def _split(record: Record) -> tuple[list[str], list[str]]:
    """(question texts, answer texts) of a record."""
    if isinstance(record, PretrainRecord):
        return [], [record.text]
    if isinstance(record, SFTRecord):
        return [m.content for m in record.messages if m.role == "user"], [
            m.content for m in record.messages if m.role == "assistant"
        ]
    assert isinstance(record, PreferenceRecord)
    # the rejected side is worse on purpose (truncated, unsafe, wrong): only prompt and chosen are judged
    return [m.content for m in record.prompt if m.role == "user"], [m.content for m in record.chosen]


def _last_pair(record: Record) -> tuple[str, list[str]] | None:
    if isinstance(record, SFTRecord):
        users = [m.content for m in record.messages if m.role == "user"]
        answers = [m.content for m in record.messages if m.role == "assistant"]
        return users[-1], answers[-1:]
    if isinstance(record, PreferenceRecord):
        users = [m.content for m in record.prompt if m.role == "user"]
        return users[-1], ["".join(m.content for m in record.chosen)]
    return None


def _fewest_distinct(total: np.ndarray, limit: float) -> np.ndarray:
    """Per count of n-grams: the fewest distinct ones for which `1.0 - distinct / total <= limit`, the
    float expression the rule computes (so rounding agrees): the estimate, moved until it is the first
    count that passes; total + 1 when none does."""
    def passes(d: np.ndarray) -> np.ndarray:
        return 1.0 - d / total <= limit

    need = np.clip(np.ceil((1.0 - limit) * total), 0, total + 1).astype(np.int64)
    for _ in range(4):  # the estimate is off by at most one or two
        up = (need <= total) & ~passes(need)
        down = (need > 0) & passes(need - 1)
        if not (up.any() or down.any()):
            return need
        need = need + up - down
    raise AssertionError("the distinct n-gram bound did not settle")


_GARBLE, _STRIPPED, _BREAK, _SPACE = 1, 2, 4, 8


@cache
def _char_classes() -> np.ndarray:
    """Per BMP code point, bits: a garble gate character, a character placeholders are stripped of,
    a line break (str.splitlines), whitespace (str.split)."""
    return (char_table(_GARBLE_START.pattern).astype(np.uint8) * np.uint8(_GARBLE)
            | char_table(_PLACEHOLDER_STRIP.pattern.removesuffix("+")) * np.uint8(_STRIPPED)
            | line_break_table() * np.uint8(_BREAK) | space_table() * np.uint8(_SPACE))


class QualityRules:
    def __init__(self, config: QualityConfig, boilerplate: Boilerplate | None = None) -> None:
        self.config = config
        self.boilerplate = boilerplate or Boilerplate.load()

    def check_many(self, records: list[Record]) -> list[QualityVerdict]:
        """[check(r) for r in records]; the NFKC folding the answer-equals-question rule needs is done
        for the whole batch at once (texts the rules rewrite are folded one by one, as in `check`)."""
        pairs = [_last_pair(r) for r in records]
        texts = list(dict.fromkeys(t for p in pairs if p for t in (p[0], *p[1])))
        folded = dict(zip(texts, nfkc_lower_many(texts), strict=True))
        return [self.check(r, folded) for r in records]

    def unchanged_many(self, view: TextView) -> list[bool]:
        """Per record of `view`: True when `check` keeps it as it is (no boilerplate stripped, no rule
        broken, nothing counted), from its texts alone."""
        if view.kind == "pretrain" and self.config.min_cjk_share <= 0:
            return self._pretrain_unchanged([turns[0][1] for turns in view.turns])
        strip = self.config.strip_boilerplate and view.kind != "pretrain"  # as in `check`
        parts = [view.questions_answers(i) for i in range(len(view))]
        pairs = [view.last_pair(i) for i in range(len(view))]
        texts = list(dict.fromkeys(t for p in pairs if p for t in (p[0], *p[1])))
        folded = dict(zip(texts, nfkc_lower_many(texts), strict=True))
        flat = [t for questions, answers in parts for t in (*questions, *answers)]
        is_answer = np.array([a for questions, answers in parts for a in [False] * len(questions) + [True] * len(answers)], bool)
        plain = self.surely_plain_fine(flat, is_answer).tolist()
        out, at = [], 0
        for (questions, answers), pair in zip(parts, pairs, strict=True):
            k = len(questions) + len(answers)
            plain_fine, at = all(plain[at : at + k]), at + k
            if strip and any(self.boilerplate.strip(t) != t for t in answers):  # answers: the assistant turns
                out.append(False)
            else:
                out.append(self.judge(questions, answers, pair, folded, plain_fine) is None)
        return out

    def _pretrain_unchanged(self, texts: list[str]) -> list[bool]:
        """unchanged_many of pretrain records (one answer text each, nothing stripped, no pair, no CJK
        rule): the artifact rule, and the plain rules where the batch pass did not settle them."""
        plain = self.surely_plain_fine(texts, np.ones(len(texts), bool)).tolist()
        should_drop = self.boilerplate.should_drop
        gate = self.boilerplate._gates()[2]  # should_drop's own gate, fetched once for the batch
        search = gate.search if gate is not None else should_drop
        return [(search(t) is None or should_drop(t) is None) and (fine or self._plain([], [t]) is None)
                for t, fine in zip(texts, plain, strict=True)]

    def check(self, record: Record, folded: dict[str, str] | None = None) -> QualityVerdict:
        """The verdict on one record; `folded` may hold nfkc_lower of its texts, computed beforehand."""
        cfg = self.config
        touched: Counter = Counter()
        if cfg.strip_boilerplate and not isinstance(record, PretrainRecord):  # only assistant turns are stripped
            try:
                stripped = rewrite(record, lambda role, t: self.boilerplate.strip(t) if role in ("assistant",) else t)
            except ValueError:
                return QualityVerdict(None, "boilerplate_only", "nothing but boilerplate left in an answer")
            if stripped is not record:
                touched["boilerplate_stripped"] += 1
                record = stripped
        questions, answers = _split(record)
        failed = self.judge(questions, answers, _last_pair(record), folded)
        if failed is not None:
            return QualityVerdict(None, *failed, touched)
        return QualityVerdict(record, touched=touched)

    def judge(self, questions: list[str], answers: list[str], pair: tuple[str, list[str]] | None,
              folded: dict[str, str] | None = None, plain_fine: bool = False) -> tuple[str, str] | None:
        """(reason, message) of the first rule the texts of one record break, None when they break none:
        every rule after boilerplate stripping, on plain texts (so a batch can be judged without records).
        `plain_fine`: `surely_plain_fine` holds for every text, so the rules it covers are skipped."""
        return (self._artifact(questions, answers) or (None if plain_fine else self._plain(questions, answers))
                or self._cjk(questions, answers) or self._pair(pair, folded))

    def _artifact(self, questions: list[str], answers: list[str]) -> tuple[str, str] | None:
        for text in answers + questions:
            pattern = self.boilerplate.should_drop(text)
            if pattern:
                return "llm_artifact", f"matches {pattern!r}"
        return None

    def _plain(self, questions: list[str], answers: list[str]) -> tuple[str, str] | None:
        """The rules each text passes or fails on its own: placeholder, size, garble, repetition."""
        cfg = self.config
        for text in questions + answers:
            if len(_PLACEHOLDER_STRIP.sub("", text[:_PLACEHOLDER_PREFIX])) > _PLACEHOLDER_MAX:
                continue  # too much text to be a placeholder (lower case never shortens a text)
            key = _PLACEHOLDER_STRIP.sub("", text).lower()
            if key in PLACEHOLDERS or not key:
                return "placeholder", f"placeholder content {text.strip()[:20]!r}"
        for text in answers:
            size = len("".join(text.split()))
            if size < cfg.min_chars:
                return "too_short", f"{size} chars < --min-chars {cfg.min_chars}"
            if size > cfg.max_chars:
                return "too_long", f"{size} chars > --max-chars {cfg.max_chars}"
        for text in questions + answers:
            signals = garble_signals(text)
            if signals > cfg.max_garble_signals:
                return "garbled", f"{signals} mojibake signals"
            ratio = repeated_ngram_ratio_above(text, cfg.max_repeated_ngram_ratio)
            if ratio is not None:
                return "repeated_chars", f"repeated 10-gram share {ratio:.2f}"
            ratio = repeated_line_ratio(text)
            if ratio > cfg.max_repeated_line_ratio:
                return "repeated_lines", f"repeated line share {ratio:.2f}"
        return None

    def _cjk(self, questions: list[str], answers: list[str]) -> tuple[str, str] | None:
        cfg = self.config
        if cfg.min_cjk_share > 0:
            share = cjk_share("".join(questions + answers), no_letters=1.0)
            if share < cfg.min_cjk_share:
                return "low_cjk", f"CJK share {share:.2f} < {cfg.min_cjk_share}"
        return None

    @staticmethod
    def _pair(pair: tuple[str, list[str]] | None, folded: dict[str, str] | None) -> tuple[str, str] | None:
        if pair:
            question, replies = pair
            known = folded or {}

            def clean(text: str) -> str:  # = clean_for_shingles(text)
                norm = known.get(text)
                return clean_for_shingles(text) if norm is None else clean_folded(norm)

            q = clean(question)
            if any(clean(r) == q for r in replies):
                return "answer_equals_question", "the answer repeats the question"
        return None

    def surely_plain_fine(self, texts: list[str], answer: np.ndarray) -> np.ndarray:
        """Per text: True when it surely passes the placeholder, garble and repetition rules, and (where
        `answer`) the size rule, as `_plain` judges them; False: `_plain` must decide. One pass of table
        lookups over the batch (char_checks.py)."""
        return by_chunks(self._surely_plain_fine, texts, answer)

    def _surely_plain_fine(self, texts: list[str], answer: np.ndarray) -> np.ndarray:
        cfg = self.config
        chars = CharBatch.of(texts)
        marks = chars.lookup(_char_classes())
        fine = ~chars.astral
        # every garble signal starts with a gate character: none, no signal
        fine &= (count_in((marks & _GARBLE) != 0, chars.starts, chars.ends) == 0) & (cfg.max_garble_signals >= 0)
        # placeholder: more than _PLACEHOLDER_MAX kept characters among the first _PLACEHOLDER_PREFIX
        prefix_end = np.minimum(chars.ends, chars.starts + _PLACEHOLDER_PREFIX)
        fine &= count_in((marks & _STRIPPED) == 0, chars.starts, prefix_end) > _PLACEHOLDER_MAX
        # repeated lines: fewer than two line breaks make fewer than three lines (ratio 0.0)
        fine &= (count_in((marks & _BREAK) != 0, chars.starts, chars.ends) < 2) & (cfg.max_repeated_line_ratio >= 0)
        # size and repeated 10-grams, on the text without whitespace
        solid = (marks & _SPACE) == 0
        size = count_in(solid, chars.starts, chars.ends)
        ends = np.cumsum(size)
        starts = ends - size
        fine &= ~answer | ((size >= cfg.min_chars) & (size <= cfg.max_chars))
        n, limit = 10, cfg.max_repeated_ngram_ratio
        total = size - n + 1
        short = total < 2 * n  # the rule gives None for these when 0 <= limit
        need = np.where(short, 0, _fewest_distinct(np.maximum(total, 1), limit))
        fine &= np.where(short, limit >= 0, distinct_windows_at_least(chars.codes[solid], starts, ends, n, need))
        return fine
