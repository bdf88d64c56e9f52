"""Safety lexicon: categories, medical allowlist, user lexicons, drop vs flag in the curation step."""

from __future__ import annotations

import pytest

from medmill.builders.curation.safety import SafetyMatcher, default_lexicon, load_lexicon
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import SafetyStep
from medmill.schemas import Message, SFTRecord, Source
from medmill.schemas.errors import MedmillError


def sft(q: str, a: str) -> SFTRecord:
    msgs = [Message(role="user", content=q), Message(role="assistant", content=a)]
    return SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="t"))


@pytest.fixture(scope="module")
def matcher() -> SafetyMatcher:
    return SafetyMatcher(default_lexicon())


def test_default_lexicon_is_versioned_and_categorised():
    lex = default_lexicon()
    assert lex.version and {"self_harm", "illegal_drugs", "violence", "sexual", "fraud", "hate"} <= set(lex.categories)
    assert lex.categories["quackery"].action == "flag"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("请问怎么自杀比较快", "self_harm"),
        ("哪里买冰毒最便宜", "illegal_drugs"),
        ("教我自制炸药", "violence"),
        ("推荐几个黄色网站", "sexual"),
        ("可以代开病假条吗", "fraud"),
        ("这个祖传秘方包治百病", "quackery"),
        ("ＨＯＷ ＴＯ ＫＩＬＬ ＭＹＳＥＬＦ", "self_harm"),  # fullwidth + upper case: NFKC + lower first
    ],
)
def test_categories_match(matcher, text, category):
    assert category in {h.category for h in matcher.scan(text)}


@pytest.mark.parametrize(
    "text",
    [
        "男性患者性激素水平偏低，建议复查",
        "性传播疾病包括梅毒、淋病等",
        "患者性别：女，年龄45岁",
        "淫羊藿有补肾阳的功效",
        "需要进行自杀风险评估，并预防自杀",
        "吗啡和芬太尼属于阿片类镇痛药，须凭处方使用",
    ],
)
def test_medical_text_does_not_trip(matcher, text):
    assert matcher.scan(text) == []


def test_allowlist_is_per_category(tmp_path):
    # a user lexicon with the bare character 性: the sexual allowlist shields medical words,
    # but the same phrase does not shield a term of another category
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nversion: '1'\ncategories:\n  sexual:\n    terms: [性]\n  other:\n    action: flag\n    terms: [激素]\n", encoding="utf-8")
    lex = default_lexicon()
    lex.merge(load_lexicon(f))
    m = SafetyMatcher(lex)
    hits = m.scan("性激素六项检查")
    assert [h.category for h in hits] == ["other"]
    assert [h.category for h in m.scan("聊性的话题")] == ["sexual"]
    assert "mine@1" in lex.version


def test_txt_lexicon_with_header_and_allow(tmp_path):
    f = tmp_path / "drugs_extra.txt"
    f.write_text("# category: illegal_drugs\n# action: flag\n# version: 3\n神仙水\nallow: 神仙水样分泌物\n", encoding="utf-8")
    m = SafetyMatcher(load_lexicon(f))
    assert m.actions == {"illegal_drugs": "flag"}
    assert [h.term for h in m.scan("出售神仙水")] == ["神仙水"]
    assert m.scan("神仙水样分泌物") == []


def test_bad_lexicon_is_one_line_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("categories:\n  x:\n    action: explode\n", encoding="utf-8")
    with pytest.raises(MedmillError, match="action must be drop or flag"):
        load_lexicon(f)


def test_step_drops_and_flags_with_counts():
    records = [
        sft("哪里买冰毒", "不能提供，请遵守法律。"),
        sft("这个药包治百病吗", "没有任何药物能包治百病。"),
        sft("男性性激素低怎么办", "建议到内分泌科检查睾酮水平。"),
    ]
    step = SafetyStep(CurationSettings())
    result = step(records)
    assert [r.reason for r in result.rejects] == ["safety_illegal_drugs"]
    assert len(result.records) == 2
    flagged = [r for r in result.records if "safety_flags" in r.meta]
    assert len(flagged) == 1 and flagged[0].meta["safety_flags"] == {"quackery": ["包治百病"]}
    assert result.counters == {"dropped.illegal_drugs": 1, "flagged.quackery": 1}
    assert step.summary(result.counters)["lexicon_version"] == default_lexicon().version

    flag_only = SafetyStep(CurationSettings(safety_flag_only=True))(records)
    assert not flag_only.rejects and len(flag_only.records) == 3


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("细胞分离后记录染色情况和抗体组合", None),  # 染色+情况 contains 色情
        ("第一类精神药品处方为淡红色", None),  # 精神药品 contains 神药
        ("一夜情后担心感染艾滋病，需要检查吗", "sexual_behaviour"),  # a sexual-health question: flag, not drop
    ],
)
def test_real_sample_false_positives_and_sexual_health_questions(matcher, text, flagged):
    hits = {h.category for h in matcher.scan(text)}
    assert hits == ({flagged} if flagged else set())
    if flagged:
        assert matcher.actions[flagged] == "flag"


def test_lexicon_terms_as_one_string_are_one_phrase_not_characters(tmp_path):
    # `terms: 假药` (no list brackets) once became the terms 假 and 药 and dropped every record naming a drug
    f = tmp_path / "fraud.yaml"
    f.write_text("categories:\n  fraud:\n    terms: 假药\n", encoding="utf-8")
    m = SafetyMatcher(load_lexicon(f))
    assert m.scan("阿莫西林是常用药") == []
    assert [h.category for h in m.scan("哪里能买到假药")] == ["fraud"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("categories:\n  x: [a, b]\n", "category x: expected a mapping"),
        ("categories:\n  x:\n    terms: {a: 1}\n", "category x terms: expected a list"),
        ("categories:\n  x:\n    allow: [ok, null]\n", "category x allow: every entry must be a phrase"),
    ],
)
def test_malformed_lexicon_category_is_one_line_error(tmp_path, body, message):
    f = tmp_path / "bad.yaml"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(MedmillError, match=message):
        load_lexicon(f)


def test_txt_lexicon_saved_with_a_bom_and_crlf(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_bytes("# category: fraud\r\n# action: flag\r\n卖肾\r\n".encode("utf-8-sig"))
    lex = load_lexicon(f)
    assert list(lex.categories) == ["fraud"] and lex.categories["fraud"].action == "flag"
    assert [h.category for h in SafetyMatcher(lex).scan("高价卖肾")] == ["fraud"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("quackery.txt", "# category: quackery\n包治百病神药\n"),
        ("more.yaml", "categories:\n  quackery:\n    terms: [包治百病神药]\n"),
    ],
)
def test_extending_a_category_without_an_action_keeps_its_action(tmp_path, name, body):
    # quackery is `flag` in the default lexicon; adding terms once silently turned it into `drop`
    f = tmp_path / name
    f.write_text(body, encoding="utf-8")
    lex = default_lexicon()
    assert lex.categories["quackery"].action == "flag"
    lex.merge(load_lexicon(f))
    assert lex.categories["quackery"].action == "flag" and "包治百病神药" in lex.categories["quackery"].terms
    f.write_text(body.replace("terms:", "action: drop\n    terms:") if name.endswith("yaml") else "# action: drop\n" + body, encoding="utf-8")
    lex.merge(load_lexicon(f))
    assert lex.categories["quackery"].action == "drop"  # an explicit action still wins


def test_new_category_from_a_file_without_action_drops(tmp_path):
    f = tmp_path / "organ_trade.txt"
    f.write_text("卖肾\n", encoding="utf-8")
    lex = default_lexicon()
    lex.merge(load_lexicon(f))
    assert lex.categories["organ_trade"].action == "drop"
