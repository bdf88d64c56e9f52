"""SafetyStep folds a whole batch at once (scan_many); hits must equal scanning text by text with
unicodedata's NFKC, the plain reference."""

from __future__ import annotations

import unicodedata

from medmill.builders.curation.safety import SafetyHit, SafetyMatcher, default_lexicon
from tests.curation.fast_path_texts import SAFETY, SAFETY_ALPHABET, texts


def reference_scan(matcher: SafetyMatcher, text: str) -> list[SafetyHit]:
    norm = unicodedata.normalize("NFKC", text).lower()
    hits, allowed = [], {}
    for end, (key, roles) in matcher._auto.iter(norm):
        start = end - len(key) + 1
        for cat, is_allow in roles:
            (allowed.setdefault(cat, []).append((start, end)) if is_allow else hits.append((cat, key, start, end)))
    return [SafetyHit(c, k, s) for c, k, s, e in hits if not any(a <= s and e <= b for a, b in allowed.get(c, ()))]


def test_scan_many_equals_text_by_text():
    matcher = SafetyMatcher(default_lexicon())
    batch = texts(5, 30_000, SAFETY, SAFETY_ALPHABET)
    got = matcher.scan_many(batch)
    want = [reference_scan(matcher, t) for t in batch]
    assert got == want
    assert [matcher.scan(t) for t in batch[:2000]] == want[:2000]
    assert sum(map(bool, want)) > 1000  # the corpus hits the lexicon often, allow phrases included


def test_gate_is_exercised_and_handles_short_and_astral_terms():
    from medmill.builders.curation.safety import Category, Lexicon
    from medmill.builders.text.fold import fold_many

    matcher = SafetyMatcher(default_lexicon())
    batch = texts(6, 6_000, SAFETY, SAFETY_ALPHABET)
    want = [reference_scan(matcher, t) for t in batch]
    folded = fold_many(batch)
    assert sum(bool(w) and bool(ic) for w, ic in zip(want, folded.in_codes, strict=True)) > 300  # table-folded texts with hits
    lex = Lexicon("t", "1", {"x": Category("x", "drop", terms={"毒", "𠀀药", "ab"}, allow={"毒性"})})
    small = SafetyMatcher(lex)
    batch += ["有毒", "毒性反应", "𠀀药", "AB", "ａｂ", "a\u0301b", "", "中毒。", "没有问题"]
    assert small.scan_many(batch) == [reference_scan(small, t) for t in batch]
