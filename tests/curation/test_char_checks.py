"""The batch-wide pre-checks of char_checks.py may only ever say "surely fine" when the exact rule
says so: a text `surely_plain_fine` passes must pass the quality rules it covers, a text
`may_find_many` rules out must hold no PII, a distinct-window bound must never exceed the true count.
Each check must also settle most ordinary texts, or it would be no pre-check at all."""

from __future__ import annotations

import random

import numpy as np
import pytest

from medmill.builders.curation import quality as q
from medmill.builders.curation.char_checks import (
    CharBatch,
    count_in,
    distinct_windows_at_least,
    window_hashes,
)
from medmill.builders.curation.pii import PIIScanner
from tests.curation.fast_path_texts import PII, PII_ALPHABET, QUALITY, QUALITY_ALPHABET, texts

ORDINARY = ["高血压是心内科常见病，典型表现为头痛、头晕，治疗常用硝苯地平，疗程约30天，患者应低盐低脂饮食。",
            "糖尿病可并发肾病，复查时应检查血常规，老年人出现胸闷时更要重视，孕妇使用阿司匹林前须咨询医生。",
            "Patients with asthma should avoid cold air and keep an inhaler at hand during exercise sessions."]
ODD = ["𝟘𝟙𝟚𝟛𝟜𝟝𝟞𝟟𝟠𝟡" * 3, "😀" * 30, "患者" + "😀" + "头痛" * 30, "", " ", "\u2028\u2028", "一\r\n二\r\n三\r\n一", "x\x85y\x85z\x85x",
       "\n".join(["高血压是心内科常见病典型表现为头痛", "糖尿病可并发肾病复查时应检查血常规", "高血压是心内科常见病典型表现为头痛",
                  "老年人出现胸闷时更要重视孕妇慎用", "高血压是心内科常见病典型表现为头痛"]),  # repeated lines only
       "哈" * 19, "哈" * 29, "哈哈呵" * 20, "頭痛" * 11, "\u3000" * 40 + "头痛", "，" * 40 + "无", "。" * 31 + "无"]


def _corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    out = texts(seed, 3000, QUALITY, QUALITY_ALPHABET) + ODD
    for _ in range(400):  # long texts: repeated and not
        base = rng.choice(ORDINARY)
        out.append(base * rng.randint(1, 12) if rng.random() < 0.5 else "".join(rng.sample(base, len(base))) * rng.randint(1, 3))
    out += [rng.choice(ORDINARY)[: rng.randint(0, 60)] for _ in range(300)]
    return out


CONFIGS = [
    q.QualityConfig(),
    q.QualityConfig(min_chars=30, max_chars=60, max_repeated_ngram_ratio=0.1, max_garble_signals=0, max_repeated_line_ratio=0.0),
    q.QualityConfig(max_repeated_ngram_ratio=0.0, max_garble_signals=-1, max_repeated_line_ratio=-0.1),
    q.QualityConfig(max_repeated_ngram_ratio=-0.5, min_chars=0),
    q.QualityConfig(max_repeated_ngram_ratio=0.95, max_garble_signals=5, max_repeated_line_ratio=0.9),
]


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_surely_plain_fine_only_when_the_rules_pass(config):
    rules = q.QualityRules(config)
    corpus = _corpus(len(config.__dict__))
    for answer in (True, False):
        fine = rules.surely_plain_fine(corpus, np.full(len(corpus), answer))
        for text, ok in zip(corpus, fine.tolist(), strict=True):
            if ok:
                verdict = rules._plain([], [text]) if answer else rules._plain([text], [])
                assert verdict is None, (text, answer, verdict)
    ordinary = rules.surely_plain_fine(ORDINARY * 3, np.ones(9, bool))
    if config == q.QualityConfig():
        assert ordinary.all()  # the common case is settled in the batch pass


def test_surely_plain_fine_settles_most_clean_texts():
    rules = q.QualityRules(q.QualityConfig())
    rng = random.Random(5)
    clean = ["，".join(rng.sample(ORDINARY[0].split("，") + ORDINARY[1].split("，"), 6)) for _ in range(500)]
    passing = [t for t in clean if rules._plain([], [t]) is None]
    assert len(passing) > 450
    assert rules.surely_plain_fine(passing, np.ones(len(passing), bool)).mean() > 0.95


def test_distinct_window_bound_never_exceeds_the_count():
    rng = random.Random(2)
    corpus = [t for t in _corpus(9) if t]
    for n in (1, 2, 3, 10, 13):
        chars = CharBatch.of(corpus)
        exact = np.array([len({t[i : i + n] for i in range(len(t) - n + 1)}) for t in corpus])
        for trial in range(3):
            need = np.array([rng.randint(0, max(1, e + 2)) for e in exact]) if trial else exact
            got = distinct_windows_at_least(chars.codes, chars.starts, chars.ends, n, need)
            assert not (got & (exact < need)).any(), n
            astral = chars.astral  # clipped codes may merge astral windows: only ever fewer
            assert got[~astral & (exact >= need) & (exact <= 100)].mean() > 0.9


def test_window_hashes_are_the_polynomial():
    codes = np.array([ord(c) for c in "高血压是心内科常见病abc" * 3], np.intp)
    for n in (1, 2, 5, 10, 16):
        want = [sum(int(codes[p + k]) * pow(0x01000193, n - 1 - k, 1 << 32) for k in range(n) if p + k < len(codes)) % (1 << 32)
                for p in range(len(codes))]
        assert window_hashes(codes, n).tolist() == want


def test_fewest_distinct_is_the_first_passing_count():
    for limit in (0.5, 0.3, 0.1, 0.0, 0.999, 1.0, -0.2, 1 / 3):
        total = np.arange(1, 400)
        got = q._fewest_distinct(total, limit)
        for t, g in zip(total.tolist(), got.tolist(), strict=True):
            want = next((d for d in range(t + 1) if 1.0 - d / t <= limit), t + 1)
            assert g == want, (limit, t)


def test_count_in_spans():
    marks = np.array([1, 0, 1, 1, 0, 1], bool)
    assert count_in(marks, np.array([0, 2, 2, 5, 6]), np.array([2, 2, 5, 6, 6])).tolist() == [1, 0, 2, 1, 0]


@pytest.mark.parametrize("seed", [1, 2])
def test_may_find_many_rules_out_only_texts_without_pii(seed):
    scanner = PIIScanner()
    corpus = texts(seed, 4000, PII, PII_ALPHABET) + ODD + ORDINARY + ["１２３", "٣٤٥", "𝟙𝟚𝟛"]
    maybe = scanner.may_find_many(corpus)
    for text, m in zip(corpus, maybe.tolist(), strict=True):
        if not m:
            assert scanner.find(text) == [], text
    assert not scanner.may_find_many(["高血压是心内科常见病，疗程约30天。"] * 3).any()
    assert scanner.may_find_many(["电话13812345678", "a@b.cn", "第1.5天"]).all()


@pytest.mark.parametrize("pattern", [r"\d", r"[\s。.，,]", "[a-z]", "(?i:[a-z])", "a|bc"])
def test_char_table_is_the_one_character_match(pattern):
    import re

    from medmill.builders.curation.char_checks import BMP, char_table

    rx = re.compile(pattern)
    want = np.fromiter((rx.fullmatch(chr(c)) is not None for c in range(BMP)), bool, BMP)
    assert (char_table(pattern) == want).all()


def test_checks_in_chunks_equal_one_pass(monkeypatch):
    """Long batches are checked a few million characters at a time: the same answers as one pass."""
    from medmill.builders.curation import char_checks

    rules, scanner = q.QualityRules(q.QualityConfig()), PIIScanner()
    corpus = _corpus(4)
    answer = np.array([i % 3 != 0 for i in range(len(corpus))])
    whole = rules.surely_plain_fine(corpus, answer), scanner.may_find_many(corpus)
    monkeypatch.setattr(char_checks.by_chunks, "__kwdefaults__", {"chunk_chars": 500})
    passes = []
    monkeypatch.setattr(char_checks.CharBatch, "of", classmethod(lambda cls, texts, of=char_checks.CharBatch.of: passes.append(1) or of(texts)))
    chunked = rules.surely_plain_fine(corpus, answer), scanner.may_find_many(corpus)
    assert len(passes) > 20
    assert (whole[0] == chunked[0]).all() and (whole[1] == chunked[1]).all()
    assert len(rules.surely_plain_fine([], np.zeros(0, bool))) == 0 and len(scanner.may_find_many([])) == 0
