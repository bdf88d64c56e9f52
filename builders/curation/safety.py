"""Safety lexicon: categorised, versioned Chinese terms matched with one Aho-Corasick automaton.

Lexicons are data (`lexicons/safety_zh.yaml`, or a user's YAML/TXT file). A term hit is ignored
when it lies inside an allow phrase of the same category (medical context: 性激素, 淫羊藿), so the
lexicon can hold short terms without flagging clinical text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import ahocorasick
import numpy as np
import yaml

from medmill.builders.text.fold import Folded, fold_many, nfkc_lower
from medmill.schemas.errors import MedmillError

Action = Literal["drop", "flag"]


@dataclass
class Category:
    name: str
    action: Action = "drop"
    description: str = ""
    terms: set[str] = field(default_factory=set)
    allow: set[str] = field(default_factory=set)
    action_given: bool = True  # False: the file named no action, so merging keeps the existing one


@dataclass
class Lexicon:
    name: str
    version: str
    categories: dict[str, Category]

    def merge(self, other: Lexicon) -> None:
        for cat in other.categories.values():
            mine = self.categories.setdefault(cat.name, Category(cat.name, cat.action, cat.description))
            mine.terms |= cat.terms
            mine.allow |= cat.allow
            if cat.action_given:  # adding terms to a `flag` category must not turn it into `drop`
                mine.action = cat.action
        self.version = f"{self.version}+{other.name}@{other.version}"


def _norm(term: str) -> str:
    return unicodedata.normalize("NFKC", term).lower().strip()


def _action(value: object, where: str) -> Action:
    if value not in ("drop", "flag"):
        raise MedmillError(f"{where}: action must be drop or flag, got {value!r}")
    return value  # type: ignore[return-value]


def _phrases(value: object, where: str) -> set[str]:
    """A YAML list of phrases (a lone string is one phrase, never a list of its characters)."""
    if value is None:
        return set()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise MedmillError(f"{where}: expected a list of phrases, got {type(value).__name__}")
    bad = [v for v in value if not isinstance(v, str | int | float) or isinstance(v, bool)]
    if bad:
        raise MedmillError(f"{where}: every entry must be a phrase, got {bad[0]!r}")
    return {t for t in (_norm(str(v)) for v in value) if t}


def load_lexicon(path: Path) -> Lexicon:
    """A YAML lexicon ({name, version, categories: {cat: {action, terms, allow}}}) or a TXT file:
    one term per line, `allow: PHRASE` lines, and `# category: NAME` / `# action: flag` /
    `# version: V` header comments (category defaults to the file name)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is not part of the first term
    except (OSError, UnicodeDecodeError) as e:
        raise MedmillError(f"cannot read lexicon {path}: {e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise MedmillError(f"lexicon {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        cats = data.get("categories") if isinstance(data, dict) else None
        if not isinstance(cats, dict):
            raise MedmillError(f"lexicon {path} needs a `categories:` mapping")
        categories = {}
        for name, spec in cats.items():
            spec = spec or {}
            where = f"lexicon {path} category {name}"
            if not isinstance(spec, dict):
                raise MedmillError(f"{where}: expected a mapping with action/terms/allow, got {type(spec).__name__}")
            categories[str(name)] = Category(
                name=str(name),
                action=_action(spec.get("action", "drop"), where),
                description=str(spec.get("description", "")),
                terms=_phrases(spec.get("terms"), f"{where} terms"),
                allow=_phrases(spec.get("allow"), f"{where} allow"),
                action_given="action" in spec,
            )
        return Lexicon(str(data.get("name", path.stem)), str(data.get("version", "0")), categories)
    header = {"category": path.stem, "action": "", "version": "0"}
    cat_terms: set[str] = set()
    allow: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            if key.strip() in header and value.strip():
                header[key.strip()] = value.strip()
        elif line.lower().startswith("allow:"):
            allow.add(_norm(line[6:]))
        elif line:
            cat_terms.add(_norm(line))
    action = _action(header["action"] or "drop", str(path))
    cat = Category(header["category"], action, "", cat_terms, allow - {""}, action_given=bool(header["action"]))
    return Lexicon(path.stem, header["version"], {cat.name: cat})


def default_lexicon() -> Lexicon:
    """The shipped lexicon: a fresh copy per call (callers merge their own files into it)."""
    shipped = _shipped_lexicon()
    categories = {name: replace(cat, terms=set(cat.terms), allow=set(cat.allow)) for name, cat in shipped.categories.items()}
    return Lexicon(shipped.name, shipped.version, categories)


@lru_cache(maxsize=1)
def _shipped_lexicon() -> Lexicon:
    """Read once per process: every curated build and filter run starts from it."""
    with resources.as_file(resources.files("medmill.builders.curation") / "lexicons" / "safety_zh.yaml") as p:
        return load_lexicon(p)


@dataclass(frozen=True)
class SafetyHit:
    category: str
    term: str
    start: int


class SafetyMatcher:
    """One automaton over every term and allow phrase of a lexicon."""

    def __init__(self, lexicon: Lexicon, flag_only: bool = False) -> None:
        self.lexicon = lexicon
        self.actions: dict[str, Action] = {
            name: ("flag" if flag_only else cat.action) for name, cat in lexicon.categories.items()
        }
        self._auto = ahocorasick.Automaton()
        entries: dict[str, list[tuple[str, bool]]] = {}
        for cat in lexicon.categories.values():
            for t in cat.terms:
                entries.setdefault(t, []).append((cat.name, False))
            for t in cat.allow:
                entries.setdefault(t, []).append((cat.name, True))
        for key, value in entries.items():
            self._auto.add_word(key, (key, value))
        self._empty = not entries
        if entries:
            self._auto.make_automaton()
        self._gate = _TermGate([k for k, roles in entries.items() if any(not is_allow for _c, is_allow in roles)])

    def scan(self, text: str) -> list[SafetyHit]:
        if self._empty:
            return []
        return self._scan_folded(nfkc_lower(text))

    def scan_many(self, texts: list[str]) -> list[list[SafetyHit]]:
        """[scan(t) for t in texts], with the NFKC + lower-case folding done for the whole batch, and
        the automaton run only on texts where a term may occur."""
        if self._empty or not texts:
            return [[] for _ in texts]
        folded = fold_many(texts)
        maybe = self._gate.may_occur(folded).tolist()
        return [self._scan_folded(norm) if m else [] for norm, m in zip(folded.texts, maybe, strict=True)]

    def _scan_folded(self, norm: str) -> list[SafetyHit]:
        hits: list[tuple[str, str, int, int]] = []
        allowed: dict[str, list[tuple[int, int]]] = {}
        for end, (key, roles) in self._auto.iter(norm):
            start = end - len(key) + 1
            for cat, is_allow in roles:
                if is_allow:
                    allowed.setdefault(cat, []).append((start, end))
                else:
                    hits.append((cat, key, start, end))
        if not hits:
            return []
        return [
            SafetyHit(cat, key, s)
            for cat, key, s, e in hits
            if not any(a <= s and e <= b for a, b in allowed.get(cat, ()))
        ]


class _TermGate:
    """Which folded texts may hold a term: a term of one character occurs only where that character
    does, a longer one only where its first two characters do. One numpy pass over a batch's code
    points; texts folded by unicodedata (not in the code array) always may."""

    def __init__(self, terms: list[str]) -> None:
        bmp = [t for t in terms if all(ord(c) < 0x10000 for c in t)]  # others need an astral character,
        # which only texts outside the code array hold
        self.single = np.zeros(0x10000, dtype=bool)
        self.first = np.zeros(0x10000, dtype=bool)
        for t in bmp:
            (self.single if len(t) == 1 else self.first)[ord(t[0])] = True
        self.pairs = np.unique(np.array([(ord(t[0]) << 32) | ord(t[1]) for t in bmp if len(t) > 1], dtype=np.uint64))

    def may_occur(self, f: Folded) -> np.ndarray:
        maybe = ~f.in_codes
        codes = f.codes
        if not len(codes):
            return maybe
        low = np.minimum(codes, 0xFFFF)
        at = np.flatnonzero(self.single.take(low))
        if len(self.pairs) and len(codes) > 1:
            starts = np.flatnonzero(self.first.take(low[:-1]))
            pairs = (codes[starts].astype(np.uint64) << np.uint64(32)) | codes[starts + 1].astype(np.uint64)
            pos = np.minimum(np.searchsorted(self.pairs, pairs), len(self.pairs) - 1)
            at = np.concatenate([at, starts[self.pairs[pos] == pairs]])
        if len(at):  # the text each position lies in (a pair across two texts marks the first: harmless)
            maybe[np.searchsorted(f.ends, at, side="right")] = True
        return maybe
