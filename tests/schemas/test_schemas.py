"""Record schemas: role order, blank content, preference pairs, stable ids, row round trip."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medmill.schemas import Message, PreferenceRecord, PretrainRecord, RejectRow, SFTRecord, Source, stable_id

SRC = Source(file="kg.json", line=3, ref="感冒", group="entity:感冒", builder="test", builder_version="1")


def msgs(*pairs: tuple[str, str]) -> list[Message]:
    return [Message(role=r, content=c) for r, c in pairs]


def test_sft_valid_with_system_and_two_rounds():
    m = msgs(("system", "你是医生"), ("user", "感冒吃什么药？"), ("assistant", "多休息。"), ("user", "发烧呢？"), ("assistant", "就医。"))
    rec = SFTRecord(id=SFTRecord.make_id(m), messages=m, source=SRC)
    assert rec.messages[-1].role == "assistant"


@pytest.mark.parametrize(
    "pairs, needle",
    [
        ([("assistant", "a"), ("user", "b")], "expected user"),
        ([("user", "a"), ("user", "b")], "expected assistant"),
        ([("user", "a")], "last turn is user"),
        ([("user", "a"), ("assistant", "b"), ("system", "c")], "system message may only come first"),
        ([], "no messages"),
    ],
)
def test_sft_role_rules(pairs, needle):
    with pytest.raises(ValidationError) as e:
        SFTRecord(id="x", messages=msgs(*pairs), source=SRC)
    assert needle in str(e.value)


@pytest.mark.parametrize("content", ["", "   ", "\n\t\u3000"[:2]])
def test_blank_content_invalid(content):
    with pytest.raises(ValidationError):
        Message(role="user", content=content)


def test_unknown_role_invalid():
    with pytest.raises(ValidationError):
        Message(role="bot", content="hi")


def test_preference_rejects_same_answer_after_normalisation():
    prompt = msgs(("user", "高血压能喝酒吗？"))
    with pytest.raises(ValidationError) as e:
        PreferenceRecord(
            id="p",
            prompt=prompt,
            chosen=msgs(("assistant", "不建议饮酒。")),
            rejected=msgs(("assistant", " 不建议饮酒。 ")),
            source=SRC,
        )
    assert "same text" in str(e.value)


def test_preference_prompt_must_end_on_user_and_sides_be_assistant():
    with pytest.raises(ValidationError) as e:
        PreferenceRecord(
            id="p",
            prompt=msgs(("user", "q"), ("assistant", "a")),
            chosen=msgs(("user", "x")),
            rejected=msgs(("assistant", "y")),
            source=SRC,
        )
    text = str(e.value)
    assert "last turn is assistant" in text and "assistant messages only" in text


def test_pretrain_blank_text_invalid():
    with pytest.raises(ValidationError):
        PretrainRecord(id="t", text="  ", source=SRC)


def test_ids_are_content_hashes():
    a = msgs(("user", "问"), ("assistant", "答"))
    b = msgs(("user", "问"), ("assistant", "答"))
    c = msgs(("user", "问"), ("assistant", "答！"))
    assert SFTRecord.make_id(a) == SFTRecord.make_id(b) != SFTRecord.make_id(c)
    assert stable_id("sft", [1]) != stable_id("pretrain", [1])


def test_row_round_trip_keeps_meta():
    m = msgs(("user", "问"), ("assistant", "答"))
    rec = SFTRecord(id=SFTRecord.make_id(m), messages=m, source=SRC, meta={"relation": "症状", "values": ["发热"]})
    row = rec.to_row()
    assert isinstance(row["meta"], str) and "症状" in row["meta"]
    assert "kind" not in row
    assert SFTRecord.from_row(row) == rec


def test_reject_row_json_is_one_line():
    r = RejectRow(stage="read", reason="invalid_json", message="bad", source=SRC, raw="{oops\n")
    assert "\n" not in r.to_json()
