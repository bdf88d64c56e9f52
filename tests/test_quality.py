"""Quality rules: each rule rejects what it names and keeps good medical QA; boilerplate is stripped."""

from __future__ import annotations

import pytest

from medmill.builders.curation.quality import Boilerplate, QualityConfig, QualityRules, garble_signals
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.curation.stages import QualityStep
from medmill.schemas import Message, PreferenceRecord, PretrainRecord, SFTRecord, Source

GOOD = "高血压患者要控制食盐摄入，每天不超过6克，规律服用降压药，定期监测血压。"


def sft(q: str, a: str) -> SFTRecord:
    msgs = [Message(role="user", content=q), Message(role="assistant", content=a)]
    return SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="t"))


RULES = QualityRules(QualityConfig(min_chars=4, max_chars=200))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (sft("高血压吃什么药", "好的"), "too_short"),
        (sft("高血压吃什么药", GOOD * 10), "too_long"),
        (sft("无", GOOD), "placeholder"),
        (sft("高血压吃什么药", "N/A"), "placeholder"),
        (sft("高血压吃什么药", "……"), "placeholder"),
        (sft("头痛怎么办", "多喝水多休息" * 12), "repeated_chars"),
        (sft("头痛怎么办", "多喝水。\n多喝水。\n多喝水。\n注意休息。"), "repeated_lines"),
        (sft("头痛怎么办", "é\u0080\u009aå¸¸ç\u0097\u0085 锟斤拷锟斤拷"), "garbled"),
        (sft("高血压要注意什么？", "高血压要注意什么"), "answer_equals_question"),
        (sft("你是谁", "作为一个AI语言模型，我无法看病。"), "llm_artifact"),
    ],
)
def test_each_rule_rejects_with_its_reason(record, reason):
    verdict = RULES.check(record)
    assert verdict.record is None and verdict.reason == reason


def test_good_record_passes_unchanged():
    record = sft("高血压要注意什么？", GOOD)
    assert RULES.check(record).record is record


def test_cjk_share_rule_is_opt_in():
    english = sft("What helps a headache?", "Rest, fluids and paracetamol if needed.")
    assert RULES.check(english).record is english
    verdict = QualityRules(QualityConfig(min_cjk_share=0.5)).check(english)
    assert verdict.reason == "low_cjk"


def test_boilerplate_stripped_and_id_recomputed():
    record = sft("高血压要注意什么？", "您好，根据您的描述，" + GOOD + "感谢您的咨询，期望我的解释对你有所帮助。")
    verdict = RULES.check(record)
    assert verdict.record.messages[1].content == GOOD
    assert verdict.record.id == SFTRecord.make_id(verdict.record.messages) != record.id
    assert verdict.touched == {"boilerplate_stripped": 1}


def test_boilerplate_english_chatdoctor():
    bp = Boilerplate.load()
    text = "Hi, Thank you for posting your query. You may have a migraine; keep a headache diary. Thank you for consulting in Chat Doctor."
    assert bp.strip(text) == "You may have a migraine; keep a headache diary."


def test_answer_that_is_only_boilerplate_is_rejected():
    verdict = RULES.check(sft("头痛怎么办", "您好，祝您早日康复。"))
    assert verdict.record is None and verdict.reason in ("boilerplate_only", "too_short", "placeholder")


def test_preference_and_pretrain_kinds():
    def pref(chosen: str, rejected: str) -> PreferenceRecord:
        return PreferenceRecord(
            id="p", prompt=[Message(role="user", content="头痛怎么办")],
            chosen=[Message(role="assistant", content=chosen)], rejected=[Message(role="assistant", content=rejected)],
            source=Source(builder="t"),
        )

    # a chosen answer that parrots the question is dropped; a rejected one that does is a fine negative
    assert RULES.check(pref("头痛怎么办", GOOD)).reason == "answer_equals_question"
    assert RULES.check(pref(GOOD, "头痛怎么办")).record is not None
    text = PretrainRecord(id="t", text="第一章 发热\n" * 6, source=Source(builder="t"))
    assert RULES.check(text).reason in ("repeated_lines", "repeated_chars")


def test_garble_signals_zero_on_clean_text():
    assert garble_signals(GOOD) == 0 and garble_signals("Fever, 38.5°C – rest.") == 0


def test_step_counts_every_rule():
    records = [sft("高血压要注意什么？", GOOD), sft("无", GOOD), sft("头痛", "好"), sft("你好", "您好，" + GOOD)]
    result = QualityStep(CurationSettings(min_chars=2))(records)
    assert {r.reason for r in result.rejects} == {"placeholder", "too_short"}
    assert result.counters == {"dropped.placeholder": 1, "dropped.too_short": 1, "boilerplate_stripped": 1}
    assert all(r.stage == "quality" and r.raw for r in result.rejects)
