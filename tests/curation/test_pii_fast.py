"""PIIScanner skips detectors whose necessary conditions a text lacks; the result must equal running
every detector on every text (the plain reference below)."""

from __future__ import annotations

from collections import Counter

import pytest

from medmill.builders.curation import pii
from medmill.builders.curation.pii import DETECTORS, PIIMatch, PIIScanner
from tests.curation.fast_path_texts import PII, PII_ALPHABET, texts


def reference_find(detectors, text: str) -> list[PIIMatch]:
    """Every detector over the fullwidth-mapped text, no pre-checks."""
    original, text = text, text.translate(pii._FULLWIDTH)
    taken: list[tuple[int, int]] = []
    found: list[PIIMatch] = []
    for det in detectors:
        for m in det.pattern.finditer(text):
            start, end = m.span(det.group)
            if any(start < e and s < end for s, e in taken) or not det.valid(m.group(det.group)):
                continue
            if det.not_after is not None and det.not_after.search(text[max(0, start - 8) : start]):
                continue
            taken.append((start, end))
            found.append(PIIMatch(det.name, start, end, original[start:end]))
    return sorted(found, key=lambda x: x.start)


CORPUS = texts(16, 15_000, PII, PII_ALPHABET)


@pytest.mark.parametrize("types", [None, ["PHONE"], ["BANK_CARD", "PATIENT_ID"], ["IP", "URL", "EMAIL"], ["ID_CARD"]])
def test_pre_checks_change_no_finding(types):
    scanner = PIIScanner(types)
    found = Counter()
    for t in CORPUS:
        got = scanner.find(t)
        assert got == reference_find(scanner.detectors, t), t
        found.update(m.kind for m in got)
    # the corpus exercises every detector the scanner has (else the comparison proves little)
    assert set(found) == {d.name for d in scanner.detectors}


def test_needs_hold_for_every_detector_match():
    """Each `needs` pattern is found in every text a detector matches (what makes skipping exact)."""
    for t in CORPUS:
        mapped = t.translate(pii._FULLWIDTH)
        for det in DETECTORS:
            if det.pattern.search(mapped):
                assert all(n.search(mapped) for n in det.needs), (det.name, t)
                assert pii._MAY_HOLD_PII.search(t), t


def test_redact_unchanged_on_clean_and_dirty_text():
    scanner = PIIScanner()
    assert scanner.redact("患者头痛三天，复查血常规。") == ("患者头痛三天，复查血常规。", Counter())
    assert scanner.redact("电话１３８１２３４５６７８，邮箱ａ＠ｂ．ｃｏｍ") == ("电话<PHONE>，邮箱<EMAIL>", Counter({"PHONE": 1, "EMAIL": 1}))
