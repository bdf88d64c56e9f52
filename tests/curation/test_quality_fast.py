"""The quality rules' pre-checks (combined boilerplate patterns, a character scan before the mojibake
counts, a bound before the 10-gram set, a prefix before the placeholder key) must give the verdicts of
the plain rules, written out below as the reference."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from medmill.builders.curation import quality as q
from medmill.builders.curation.minhash import clean_for_shingles
from medmill.builders.curation.text import rewrite
from medmill.builders.text.cjk import cjk_share
from medmill.schemas import Message, PreferenceRecord, PretrainRecord, SFTRecord, Source
from tests.curation.fast_path_texts import QUALITY, QUALITY_ALPHABET, texts


def plain_garble(text: str) -> int:
    n = text.count("\ufffd") + len(q._LATIN_MOJIBAKE.findall(text)) + len(q._ESCAPED_BYTES.findall(text))
    n += sum(text.count(m) * 3 for m in q._GBK_MARKERS)
    return n + len(q._CONTROL_OR_PRIVATE.findall(text))


def plain_strip(bp: q.Boilerplate, text: str) -> str:
    out = text.strip()
    changed = True
    while changed and out:
        changed = False
        for p in bp.openers:
            new = p.sub("", out, count=1).lstrip()
            if new != out:
                out, changed = new, True
    head, tail = out[: -q._TAIL], out[-q._TAIL :]
    changed = True
    while changed and tail:
        changed = False
        for p in bp.closers:
            new = p.sub("", tail, count=1).rstrip()
            if new != tail:
                tail, changed = new, True
    out = (head + tail).rstrip()
    if out == text.strip():
        return text
    if out and out[-1] not in "。.！!？?）)」』】”\"…~":
        out += "。" if q.is_cjk(out[-1]) else "."
    return out


def plain_check(rules: q.QualityRules, record):
    """QualityRules.check as first written: every rule on every text, no pre-check."""
    cfg, bp = rules.config, rules.boilerplate
    touched: Counter = Counter()
    if cfg.strip_boilerplate:
        try:
            stripped = rewrite(record, lambda role, t: plain_strip(bp, t) if role == "assistant" else t)
        except ValueError:
            return (None, "boilerplate_only", "nothing but boilerplate left in an answer", Counter())
        if stripped is not record:
            touched["boilerplate_stripped"] += 1
            record = stripped
    questions, answers = q._split(record)
    for text in answers + questions:
        pattern = next((p.pattern for p in bp.drop if p.search(text)), None)
        if pattern:
            return (None, "llm_artifact", f"matches {pattern!r}", touched)
    for text in questions + answers:
        key = q._PLACEHOLDER_STRIP.sub("", text).lower()
        if key in q.PLACEHOLDERS or not key:
            return (None, "placeholder", f"placeholder content {text.strip()[:20]!r}", touched)
    for text in answers:
        size = len("".join(text.split()))
        if size < cfg.min_chars:
            return (None, "too_short", f"{size} chars < --min-chars {cfg.min_chars}", touched)
        if size > cfg.max_chars:
            return (None, "too_long", f"{size} chars > --max-chars {cfg.max_chars}", touched)
    for text in questions + answers:
        signals = plain_garble(text)
        if signals > cfg.max_garble_signals:
            return (None, "garbled", f"{signals} mojibake signals", touched)
        ratio = q.repeated_ngram_ratio(text)
        if ratio > cfg.max_repeated_ngram_ratio:
            return (None, "repeated_chars", f"repeated 10-gram share {ratio:.2f}", touched)
        ratio = q.repeated_line_ratio(text)
        if ratio > cfg.max_repeated_line_ratio:
            return (None, "repeated_lines", f"repeated line share {ratio:.2f}", touched)
    if cfg.min_cjk_share > 0:
        share = cjk_share("".join(questions + answers), no_letters=1.0)
        if share < cfg.min_cjk_share:
            return (None, "low_cjk", f"CJK share {share:.2f} < {cfg.min_cjk_share}", touched)
    pair = q._last_pair(record)
    if pair:
        question, replies = pair
        if any(clean_for_shingles(r) == clean_for_shingles(question) for r in replies):
            return (None, "answer_equals_question", "the answer repeats the question", touched)
    return (record, "", "", touched)


CORPUS = [t for t in texts(11, 3_000, QUALITY, QUALITY_ALPHABET) if t.strip()]
SRC = Source(builder="t")


def records():
    out = []
    for i, t in enumerate(CORPUS):
        out.append(PretrainRecord(id="x", text=t, source=SRC))
        other = CORPUS[(i * 7 + 3) % len(CORPUS)]
        msgs = [Message(role="user", content=other), Message(role="assistant", content=t)]
        out.append(SFTRecord(id="y", messages=msgs, source=SRC))
        if i % 5 == 0:
            out.append(SFTRecord(id="z", messages=[Message(role="user", content=t), Message(role="assistant", content=t)], source=SRC))
        if i % 3 == 0:
            rejected = "不同的回答" + other
            out.append(PreferenceRecord(id="p", prompt=[Message(role="user", content=other)],
                                        chosen=[Message(role="assistant", content=t)],
                                        rejected=[Message(role="assistant", content=rejected)], source=SRC))
    return out


@pytest.mark.parametrize("config", [
    q.QualityConfig(),
    q.QualityConfig(min_chars=4, max_chars=60, min_cjk_share=0.5, max_repeated_ngram_ratio=0.2, max_garble_signals=0),
    q.QualityConfig(strip_boilerplate=False, max_repeated_ngram_ratio=0.0, max_repeated_line_ratio=0.0),
])
def test_verdicts_equal_the_plain_rules(config):
    rules = q.QualityRules(config)
    reasons = Counter()
    recs = records()
    verdicts = rules.check_many(recs)  # batch folding for answer_equals_question
    for i, (r, got) in enumerate(zip(recs, verdicts, strict=True)):
        if i % 7 == 0:
            single = rules.check(r)
            assert (single.record, single.reason, single.message) == (got.record, got.reason, got.message)
        want = plain_check(rules, r)
        assert (got.record, got.reason, got.message, got.touched) == want, r
        reasons[got.reason] += 1
    if config.strip_boilerplate and config.max_garble_signals == 2:
        expected = {"", "llm_artifact", "placeholder", "garbled", "repeated_chars", "repeated_lines", "answer_equals_question"}
        assert expected <= set(reasons), reasons


def test_helpers_equal_their_plain_forms():
    bp = q.Boilerplate.load()
    stripped = 0
    for t in CORPUS:
        assert q.garble_signals(t) == plain_garble(t)
        for limit in (-0.1, 0.0, 0.2, 0.5, 0.9):
            ratio = q.repeated_ngram_ratio(t)
            assert q.repeated_ngram_ratio_above(t, limit) == (ratio if ratio > limit else None)
        assert bp.strip(t) == plain_strip(bp, t)
        stripped += bp.strip(t) != t
        assert bp.should_drop(t) == next((p.pattern for p in bp.drop if p.search(t)), None)
    assert stripped > 100


def test_combined_pattern_only_when_it_means_the_same():
    assert q._any_of((re.compile("a"), re.compile("b", re.I))) is None  # different flags
    assert q._any_of((re.compile("(a)\\1"),)) is None  # a group (its number would shift)
    assert q._any_of((re.compile("a # c", re.X),)) is None
    assert q._any_of(()) is None
    both = q._any_of((re.compile("^ab"), re.compile("c$")))
    assert both.search("xxc") and both.search("abx") and not both.search("xab")


def test_changed_lists_rebuild_the_gates():
    bp = q.Boilerplate.load()
    assert bp.should_drop("请勿转载本文") is None
    bp.drop.append(re.compile("请勿转载", re.I))
    assert bp.should_drop("请勿转载本文") == "请勿转载"
    bp.closers = [re.compile("[。]*再见。?$")]
    text = "多喝水。再见。"
    assert bp.strip(text) == "多喝水。"


def test_searched_core_is_found_wherever_the_pattern_is():
    """Gates search a pattern without its leading run of one class (`[，。\\s]*`, `\\s*?`, `.*`): it must
    be found in every text the whole pattern is found in, and the default closers lose their run."""
    import random

    patterns = [r"[，,。.\s]*(?:谢谢|感谢)[，。\s]*$", r"\s*?chat ?doctor\.?\s*$", r".*x|y", r"[\]a]*b", r"[a-c]*+c",
                r"\d*\.\d", r"[.\s]*(?:regards|best wishes),?\s*(?:dr\.?\s*[\w. ]{0,40})?[.!\s]*$", r"[x]*", r"[x]*(a)"]
    rng = random.Random(3)
    alphabet = "谢感，。 .\nchatdoctorxyab]c0123456789regardsbestwishesDr"
    corpus = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(4000)]
    corpus += ["，谢谢。", "ok chat doctor.", "Regards, Dr. Li", "]]ab", "ccc", "1.5"]
    for flags in (0, re.I):
        for p in patterns:
            whole = re.compile(p, flags)
            core = q._searched_core(whole)
            assert core.flags == whole.flags
            for t in corpus:
                if whole.search(t):
                    assert core.search(t), (p, t)
    closers = q.Boilerplate.load().closers
    assert all(not q._searched_core(c).pattern.startswith("[") for c in closers)
    assert q._searched_core(re.compile("[x]*(a)")).pattern == "[x]*(a)"  # groups: left whole
