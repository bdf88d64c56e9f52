"""Dialogue cleaning rules, prefix-copy merging and the per-file accounting of build_dialogue_records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medmill.builders.dialogue.clean import Lexicon, clean_turns, repair_roles
from medmill.builders.dialogue.config import CleanConfig, PromptConfig
from medmill.builders.dialogue.generate import build_dialogue_records
from medmill.builders.dialogue.merge import plan_prefix_merge
from medmill.builders.readers.dialogue import Dialogue, DialogueFile, RowProblem, read_dialogue_file
from medmill.schemas.errors import MedmillError
from tests.dialogue import corpora

LEX = Lexicon.load()
CFG = CleanConfig()


def clean(*turns, cfg=CFG):
    return clean_turns(list(turns), cfg, LEX)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("您好，高血压可以吃党参。感谢您的进行咨询，期望我的解释对你有所帮助。", "高血压可以吃党参。"),
        ("你好，根据你的叙述，考虑是胃炎。祝您早日康复！", "考虑是胃炎。"),
        ("亲爱的咨询者您好，多喝水。以上可以做为参考。", "多喝水。"),
        ("Hi, Thanks for the query. You may have a migraine. Hope this helps. Take care.", "You may have a migraine."),
        ("Hello and welcome. Rest well. Thanks for consulting Chat Doctor.", "and welcome. Rest well."),
        ("Hi there, drink fluids. Regards, Dr. Smith", "drink fluids."),
    ],
)
def test_openers_and_signoffs_stripped(answer, expected):
    c = clean(("user", "我该怎么办呢？"), ("assistant", answer))
    assert c.reason is None
    assert c.turns[1] == ("assistant", expected)
    assert c.counts["openers_stripped"] + c.counts["signoffs_stripped"] >= 1


def test_patient_turns_keep_their_greeting_and_answers_without_templates_are_untouched():
    c = clean(("user", "医生您好，头痛怎么办？"), ("assistant", "建议多休息，必要时服用布洛芬。"))
    assert c.turns == [("user", "医生您好，头痛怎么办？"), ("assistant", "建议多休息，必要时服用布洛芬。")]
    assert not c.counts


def test_anonymisation_tokens_fullwidth_spaces_and_runon_turns():
    c = clean(("user", "Hi Chat Doctor, my knee hurts."), ("assistant", "It may be a sprain. Patient: Thanks, what else?"))
    assert c.turns == [("user", "Hi, my knee hurts."), ("assistant", "It may be a sprain.")]
    assert c.counts["anonymisation_tokens"] == 1 and c.counts["runon_turns_cut"] == 1
    c = clean(("user", "胃痛\u3000怎么办"), ("assistant", "治疗原则：\u3000\u3000一、控制饮食  二、 规律作息"))
    assert c.turns == [("user", "胃痛怎么办"), ("assistant", "治疗原则：一、控制饮食 二、 规律作息")]
    assert c.counts["fullwidth_spaces"] == 3


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ((("user", "无"), ("assistant", "请描述症状。")), "placeholder_ask"),
        ((("user", "<无输入>"), ("assistant", "请描述症状。")), "placeholder_ask"),
        ((("user", "？？"), ("assistant", "请描述症状。")), "placeholder_ask"),
        ((("user", "头痛怎么办"), ("assistant", "足")), "one_char_turn"),
        ((("user", "头痛怎么办"), ("assistant", "  \u3000 ")), "empty_turn"),
        ((("user", "头痛怎么办"), ("assistant", "您好，祝您早日康复！")), "template_only"),
        ((("user", "头痛"), ("system", "你是医生"), ("assistant", "休息")), "bad_role_order"),
        ((("assistant", "您需要什么帮助？"),), "bad_role_order"),
    ],
)
def test_refusals(turns, reason):
    assert clean(*turns).reason == reason


def test_length_bounds():
    cfg = CleanConfig(min_chars=5, max_chars=30)
    assert clean(("user", "头痛怎么办"), ("assistant", "休息吧"), cfg=cfg).reason == "too_short"
    assert clean(("user", "头痛怎么办"), ("assistant", "多休息。" * 10), cfg=cfg).reason == "too_long"
    assert clean(("user", "头痛怎么办"), ("assistant", "多休息，多喝水。"), cfg=cfg).reason is None
    with pytest.raises(ValueError):
        CleanConfig(min_chars=10, max_chars=5)


def test_role_order_repairs_are_counted():
    counts: Counter = Counter()
    turns, problem = repair_roles(
        [("assistant", "您好"), ("user", "头痛"), ("user", "三天了"), ("assistant", "休息"), ("user", "谢谢")], counts
    )
    assert problem is None
    assert turns == [("user", "头痛\n三天了"), ("assistant", "休息")]
    assert counts == Counter(same_role_turns_joined=1, leading_doctor_turns_dropped=1, trailing_patient_turns_dropped=1)


def test_own_lexicon_file(tmp_path: Path):
    lex = tmp_path / "lex.yaml"
    lex.write_text("openers: ['^尊敬的用户[，,]']\nsignoffs: []\nplaceholders: ['测']\n", encoding="utf-8")
    c = clean_turns([("user", "头痛怎么办"), ("assistant", "尊敬的用户，您好，请休息")], CFG, Lexicon.load(lex))
    assert clean_turns([("user", "测"), ("assistant", "请讲")], CFG, Lexicon.load(lex)).reason == "placeholder_ask"
    assert c.turns[1] == ("assistant", "您好，请休息")
    bad = tmp_path / "bad.yaml"
    bad.write_text("openers: ['(unclosed']\n", encoding="utf-8")
    with pytest.raises(MedmillError, match="bad.yaml"):
        Lexicon.load(bad)


# --- prefix merge ---------------------------------------------------------------------------------


def test_conversation_and_its_three_prefix_copies_give_one_record():
    full = corpora.bentsao_conversation(7, 4)
    convs = [full[:2], full[:4], full, full[:6]]  # three prefix copies in any order
    other = corpora.bentsao_conversation(8, 2)
    plan = plan_prefix_merge([*convs, other])
    assert plan.copy_of == [2, 2, None, 2, None]
    assert len({plan.group[i] for i in range(4)}) == 1 and plan.group[4] != plan.group[0]


def test_prefix_match_ignores_system_prompt_and_spacing_but_not_content():
    full = corpora.bentsao_conversation(1, 2)
    spaced = [("system", "你是医生")] + [(r, " " + t + " ") for r, t in full[:2]]
    changed = [full[0], ("assistant", full[1][1] + "另外")]
    plan = plan_prefix_merge([full, spaced, changed])
    assert plan.copy_of == [None, 0, None]
    assert plan.group[2] != plan.group[0]  # a different first answer is a different conversation


def _file(name: str, convs: list[list[tuple[str, str]]], meta=None) -> DialogueFile:
    return DialogueFile(Path(name), name, "bentsao", "utf-8",
                        [Dialogue(i + 1, c, meta=dict(meta or {}), raw={"i": i}) for i, c in enumerate(convs)])


def test_build_merges_prefix_copies_and_keeps_them_in_one_group():
    full = corpora.bentsao_conversation(3, 4)
    f = _file("l.json", [full[:2], full[:4], full[:6], full, corpora.bentsao_conversation(4, 1)])
    b = build_dialogue_records([f], CFG, PromptConfig())
    assert len(b.records) == 2
    longest = next(r for r in b.records if len(r.messages) == 8)
    assert longest.meta["prefix_copies_merged"] == 3
    assert [r.reason for r in b.rejects] == ["prefix_copy"] * 3
    assert {r.source.line for r in b.rejects} == {1, 2, 3}
    assert b.reports[0].kept == 2 and b.reports[0].rejected == Counter(prefix_copy=3)
    kept = build_dialogue_records([f], CFG, PromptConfig(), merge_prefixes=False)
    assert len(kept.records) == 5 and not kept.rejects
    assert len({r.source.group for r in kept.records if len(r.messages) > 2 or "研究3" in r.messages[0].content}) == 1


def test_build_real_bentsao_sample_prefix_copies(samples_dir: Path):
    f = read_dialogue_file(samples_dir / "huatuo_liver_cancer_sample.json", "liver_cancer.json")
    b = build_dialogue_records([f], CFG, PromptConfig())
    for r in b.records:
        assert not any("<user>" in m.content or "<bot>" in m.content for m in r.messages)
        assert [m.role for m in r.messages] == ["user", "assistant"] * (len(r.messages) // 2)
    assert b.reports[0].rows_read == 50
    assert b.reports[0].kept + sum(b.reports[0].rejected.values()) == 50


def test_build_accounts_every_row_per_file_and_applies_prompts(samples_dir: Path):
    toyhom = read_dialogue_file(samples_dir / "toyhom_IM_sample.csv", "toyhom.csv")
    reward = read_dialogue_file(samples_dir / "medicalgpt_reward_medical_sample.jsonl", "reward.jsonl")
    bad = DialogueFile(Path("x.jsonl"), "x.jsonl", "sharegpt", "utf-8", [RowProblem(3, "invalid_json", "broken")])
    b = build_dialogue_records([toyhom, reward, bad], CFG, PromptConfig(department_prompt=True))
    for rep in b.reports:
        assert rep.kept + sum(rep.rejected.values()) == rep.rows_read
    assert b.reports[2].rejected == Counter(invalid_json=1)
    dept = [r for r in b.records if r.source.file == "toyhom.csv"]
    assert all(r.messages[0].content.startswith(f"现在你是一名{r.meta['department']}医生") for r in dept)
    assert all(r.messages[0].role == "user" for r in b.records if r.source.file == "reward.jsonl")
    fixed = build_dialogue_records([reward], CFG, PromptConfig(system_prompt="你是一名医生。"))
    assert all(r.messages[0].content == "你是一名医生。" for r in fixed.records)
    with pytest.raises(ValueError):
        PromptConfig(system_prompt="x", department_prompt=True)


def test_language_check_rejects_the_odd_one_out():
    zh = [[("user", f"头痛第{i}天怎么办？"), ("assistant", f"建议多休息第{i}次。")] for i in range(12)]
    en = [[("user", "What should I do about a headache?"), ("assistant", "Rest and drink water.")]]
    f = _file("mixed.json", zh + en)
    b = build_dialogue_records([f], CFG, PromptConfig())
    assert b.reports[0].language == "zh" and b.reports[0].rejected == Counter(wrong_language=1)
    b = build_dialogue_records([_file("mixed.json", zh + en)], CleanConfig(language="any"), PromptConfig())
    assert len(b.records) == 13
    b = build_dialogue_records([_file("half.json", zh[:3] + en * 2)], CFG, PromptConfig())
    assert b.reports[0].language == "mixed" and len(b.records) == 5


def test_toyhom_row_of_empty_cells_is_a_reject_and_rows_are_numbered(tmp_path: Path):
    src = tmp_path / "t.csv"
    src.write_text("department,title,ask,answer\n,,,\n\n内科,头痛怎么办？,无,多休息，必要时服药。\n", encoding="gb18030")
    f = read_dialogue_file(src, "t.csv")
    b = build_dialogue_records([f], CFG, PromptConfig())
    assert [(r.reason, r.source.line) for r in b.rejects] == [("empty_turn", 2)]
    assert len(b.records) == 1 and b.records[0].meta["row"] == 2 and b.records[0].source.line == 4
    assert b.records[0].messages[0].content == "头痛怎么办？"
