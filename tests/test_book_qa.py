"""build-book-qa: grounding checks, the builder against scripted results, and the command end to end
against the local OpenAI-compatible server with a realistic, imperfect scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.builders.book_qa.generate import (
    GroundedAnswer,
    QAConfig,
    QuestionItem,
    QuestionSet,
    build_book_qa,
)
from medmill.builders.core.validate import validate_dir
from medmill.builders.llm.types import LLMRequest, LLMResult
from medmill.builders.text.grounding import answer_problem, question_problem, verify_references
from medmill.builders.text.ngrams import containment, near_duplicates
from medmill.cli import _register, app
from medmill.schemas import TextChunk
from medmill.schemas.dataset_dir import iter_rows, read_manifest
from medmill.schemas.errors import MedmillError
from tests.book_lit_fake_llm import respond
from tests.llm_server import FakeLLMServer

_register()

CHUNK = TextChunk(
    id="c1",
    file="guide.md",
    offset=10,
    headings=["高血压", "2 治疗"],
    text=(
        "ACEI最常见的不良反应是干咳，不能耐受者可换用ARB。ACEI和ARB可引起血钾升高，双侧肾动脉狭窄、"
        "高钾血症患者和妊娠期妇女禁用。噻嗪类利尿剂可引起低血钾和血尿酸升高，痛风患者禁用。"
    ),
)


# --- checks -------------------------------------------------------------------------------------------


def test_references_are_verified_after_whitespace_and_width_normalisation():
    refs = verify_references(
        [
            "ACEI最常见的不良反应是干咳， 不能耐受者可换用ARB。",  # extra space
            "ＡＣＥＩ和ＡＲＢ可引起血钾升高",  # full-width letters
            "噻嗪类利尿剂……痛风患者禁用。",  # quoted with an ellipsis, both pieces in the chunk
            "ACEI可以治愈高血压。",  # not in the chunk
            "干咳",  # too short to count as evidence
        ],
        CHUNK.text,
    )
    assert refs.verified == [
        "ACEI最常见的不良反应是干咳， 不能耐受者可换用ARB。",
        "ＡＣＥＩ和ＡＲＢ可引起血钾升高",
        "噻嗪类利尿剂……痛风患者禁用。",
    ]
    assert refs.unverified == ["ACEI可以治愈高血压。", "干咳"]


def test_character_bigram_containment_works_for_chinese():
    assert containment("ACEI最常见的不良反应是干咳。", CHUNK.text) == 1.0
    assert containment("多喝热水可以增强抵抗力。", CHUNK.text) < 0.2
    assert 0.4 < containment("ACEI常见不良反应为干咳，可以换成ARB。", CHUNK.text) < 1.0


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("本文提到的ACEI不良反应是什么？", "not_self_contained"),
        ("根据上述内容，哪些患者禁用ACEI？", "not_self_contained"),
        ("该指南推荐的降压药有哪些？", "not_self_contained"),
        ("该病的首选治疗药物是什么？", "not_self_contained"),
        ("此药的常用剂量是多少？", "not_self_contained"),
        ("以下哪项是ACEI的不良反应？", "multiple_choice"),
        ("ACEI", "question_too_short"),
        ("ACEI的不良反应。", "not_a_question"),
    ],
)
def test_bad_questions(question, reason):
    assert question_problem(question)[0] == reason


@pytest.mark.parametrize(
    "question",
    [
        "65岁以上老年高血压患者的收缩压目标是多少？",  # 以上 as in "65 and over" is fine
        "eGFR＜30ml/(min·1.73m2)的2型糖尿病患者能否使用SGLT2i",  # digits kept, question word, no mark
        "服用ACEI出现干咳时应如何处理？",
        "轻度高血压应该药物治疗还是先进行生活方式干预？",  # 应该 + 药物 is not 该药
        "妊娠期高血压伴蛋白尿，因此患者需要住院观察吗？",  # 因此 + 患者 is not 此患者
    ],
)
def test_good_questions(question):
    assert question_problem(question) is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("根据上述文本，ACEI最常见的不良反应是干咳。", "meta_talk"),
        ("作为一个AI语言模型，我认为应换用ARB。", "meta_talk"),
        ("文中没有提到相关内容。", "no_answer"),
        ("资料中并未提及该药物的剂量。", "no_answer"),
        ("无法根据所给信息回答这个问题。", "no_answer"),
        ("换ARB。", "answer_too_short"),
    ],
)
def test_bad_answers(answer, reason):
    assert answer_problem(answer)[0] == reason


def test_near_duplicate_questions_by_character_bigrams():
    questions = [
        "ACEI最常见的不良反应是什么？",
        "ACEI最常见的不良反应是什么呢？",
        "哪些患者禁用噻嗪类利尿剂？",
        "ACEI最常见的不良反应是什么？",
    ]
    assert near_duplicates(questions, threshold=0.7) == {1: 0, 3: 0}


# --- builder against scripted results -------------------------------------------------------------------


class ScriptedEngine:
    """Answers questions requests with fixed question sets and answer requests by question."""

    def __init__(self, questions: dict[str, list[dict]], answers: dict[str, dict | None]):
        self.questions, self.answers = questions, answers
        self.requests: list[LLMRequest] = []

    def run(self, requests: list[LLMRequest], desc: str = "") -> list[LLMResult]:
        self.requests.extend(requests)
        out = []
        for r in requests:
            if r.schema is QuestionSet:
                chunk_id = r.key.split(":", 1)[1]
                out.append(
                    LLMResult(
                        r.key,
                        True,
                        QuestionSet(questions=[QuestionItem(**q) for q in self.questions[chunk_id]]),
                    )
                )
                continue
            question = r.messages[-1]["content"].split("问题：", 1)[1].split("\n", 1)[0]
            value = self.answers[question]
            if value is None:
                out.append(LLMResult(r.key, False, error="invalid_output", message="not JSON", raw="好的"))
            else:
                out.append(LLMResult(r.key, True, GroundedAnswer(**value)))
        return out


def test_grounding_rejects_a_reference_that_is_not_in_the_chunk_and_keeps_grounded_answers():
    other = CHUNK.model_copy(update={"id": "c2", "offset": 500, "headings": ["高血压", "3 随访"]})
    questions = {
        "c1": [
            {"question": "服用ACEI出现干咳时应如何处理？", "type": "注意事项"},
            {"question": "哪些患者禁用ACEI和ARB？", "type": "注意事项"},
            {"question": "噻嗪类利尿剂有哪些不良反应？", "type": "用药剂量"},
            {"question": "ACEI和ARB能否联合使用？", "type": "治疗"},
            {"question": "本文讲了什么？", "type": "概念"},
        ],
        "c2": [
            {"question": "服用ACEI出现干咳时应该如何处理？", "type": "注意事项"},  # near-duplicate of c1's
            {"question": "痛风患者能否使用噻嗪类利尿剂？", "type": "流行病学"},  # not a requested type
        ],
    }
    answers = {
        "服用ACEI出现干咳时应如何处理？": {
            "answerable": True,
            "answer": "ACEI最常见的不良反应是干咳，不能耐受者可换用ARB。",
            "reference": ["ACEI最常见的不良反应是干咳，  不能耐受者可换用ARB。", "编造的句子不在资料里。"],
        },
        "哪些患者禁用ACEI和ARB？": {
            "answerable": True,
            "answer": "双侧肾动脉狭窄、高钾血症患者和妊娠期妇女禁用ACEI和ARB。",
            "reference": ["ACEI可引起肝损害，肝病患者禁用。"],  # the model made the reference up
        },
        "噻嗪类利尿剂有哪些不良反应？": {
            "answerable": True,
            "answer": "噻嗪类利尿剂容易导致失眠和脱发，一般停药后可以慢慢恢复正常。",
            "reference": [
                "噻嗪类利尿剂可引起低血钾和血尿酸升高，痛风患者禁用。"
            ],  # real reference, made-up answer
        },
        "ACEI和ARB能否联合使用？": None,  # the engine gave up on this one
    }
    engine = ScriptedEngine(questions, answers)
    out = build_book_qa([CHUNK, other], QAConfig(questions_per_chunk=5), engine)

    assert len(out.records) == 1
    rec = out.records[0]
    assert [m.content for m in rec.messages] == [
        "服用ACEI出现干咳时应如何处理？",
        "ACEI最常见的不良反应是干咳，不能耐受者可换用ARB。",
    ]
    assert rec.meta["reference"] == ["ACEI最常见的不良反应是干咳，  不能耐受者可换用ARB。"]
    assert rec.meta["chunk_id"] == "c1" and rec.meta["headings"] == ["高血压", "2 治疗"]
    assert rec.source.file == "guide.md" and rec.source.offset == 10 and rec.source.ref == "c1"
    assert rec.meta["prompts"]["question"]["id"] == "book_qa_questions"

    reasons = {(r.reason, (r.raw or {}).get("question")) for r in out.rejects}
    assert ("reference_not_in_chunk", "哪些患者禁用ACEI和ARB？") in reasons
    assert ("low_overlap", "噻嗪类利尿剂有哪些不良反应？") in reasons
    assert ("invalid_output", "ACEI和ARB能否联合使用？") in reasons
    assert ("near_duplicate_question", "服用ACEI出现干咳时应该如何处理？") in reasons
    assert ("type_not_requested", "痛风患者能否使用噻嗪类利尿剂？") in reasons
    assert ("not_self_contained", "本文讲了什么？") in reasons
    assert out.counters["references_unverified"] == 2
    # the near-duplicate and the rejected questions were never sent for answers
    answered = [r for r in engine.requests if r.schema is GroundedAnswer]
    assert len(answered) == 4
    assert out.counters["chunks_with_1_qa"] == 1 and out.counters["chunks_with_0_qa"] == 1


# --- the command end to end -----------------------------------------------------------------------------


def invoke(*args) -> object:
    result = CliRunner().invoke(app, ["build-book-qa", *map(str, args)])
    if isinstance(result.exception, MedmillError):
        raise result.exception
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _records(out: Path) -> list[dict]:
    return [{**row, "split": split, "meta": json.loads(row["meta"])} for split, _, _, row in iter_rows(out)]


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def server():
    with FakeLLMServer(responder=respond) as srv:
        yield srv


@pytest.mark.slow  # ~12 s alone, most of it one-off imports and the card's plots
def test_build_book_qa_from_real_samples_and_examples(tmp_path, server, samples_dir, examples_dir):
    out = tmp_path / "book_qa"
    inputs = [
        samples_dir / "medicalgpt_pretrain_fever_textbook_sample.txt",
        samples_dir / "medicalgpt_zh_book_data_sample.json",
        samples_dir / "tcmchat_pretrain_book_sample.txt",
        examples_dir / "texts",
    ]
    result = invoke(
        *inputs, "--out", out, "--llm-base-url", server.base_url, "--llm-model", "fake", "--val-size", "0.2"
    )
    assert "build-book-qa" in result.output
    report = validate_dir(out)
    assert report.ok and report.kind == "sft"
    manifest = read_manifest(out)
    records = _records(out)
    assert len(records) == manifest["records_total"] >= 40
    assert {"train", "validation"} == {r["split"] for r in records}

    chunks_by_file: dict[str, str] = {}
    for r in records:
        meta = r["meta"]
        assert r["messages"][0]["role"] == "user" and r["messages"][1]["role"] == "assistant"
        assert r["source"]["ref"] == meta["chunk_id"] and r["source"]["builder"] == "book-qa"
        assert meta["question_type"] in {
            "概念",
            "机制",
            "诊断",
            "鉴别诊断",
            "治疗",
            "用药剂量",
            "注意事项",
            "预后",
        }
        assert meta["reference"] and meta["overlap"] >= 0.5
        chunks_by_file[r["source"]["file"]] = meta["chunk_id"]
    assert {
        "medicalgpt_pretrain_fever_textbook_sample.txt",
        "tcmchat_pretrain_book_sample.txt",
        "texts/infectious_textbook.txt",
        "texts/diabetes_notes_gb18030.txt",
    } <= set(chunks_by_file)
    assert any(f.startswith("medicalgpt_zh_book_data_sample.json#") for f in chunks_by_file)
    assert any(r["meta"]["headings"][:2] == ["第三章病毒性肝炎", "第四节治疗"] for r in records)

    # every reason a realistic model gives to reject something shows up, with file and offset
    rejects = _rejects(out)
    reasons = {r["reason"] for r in rejects}
    assert {
        "reference_not_in_chunk",
        "low_overlap",
        "meta_talk",
        "no_answer",
        "unanswerable",
        "not_self_contained",
        "near_duplicate_question",
    } <= reasons
    assert all(r["source"]["file"] for r in rejects if r["stage"].startswith("book-qa"))
    assert manifest["prompts"] == [
        {"id": "book_qa_questions", "version": "1"},
        {"id": "book_qa_answer", "version": "1"},
    ]
    assert manifest["llm"]["model"] == "fake"
    assert manifest["counters"]["clean.running_headers"] >= 3

    # splits are grouped by section: no group in two splits
    split_of: dict[str, set] = {}
    for r in records:
        split_of.setdefault(r["source"]["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())

    card = (out / "README.md").read_text(encoding="utf-8")
    assert "`medicalgpt_zh_book_data_sample.json` | json | utf-8 | 30 |" in card
    assert "`texts/diabetes_notes_gb18030.txt` | txt | gb18030 |" in card


def test_rerun_and_resume_hit_the_cache(tmp_path, server, examples_dir):
    out = tmp_path / "qa"
    args = [examples_dir / "texts", "--out", out, "--llm-base-url", server.base_url, "--llm-model", "fake"]
    invoke(*args, "--limit-chunks", "4")  # a run that stopped part way
    first = len(server.log)
    assert first > 0
    invoke(*args)  # the full run sends only what the first did not
    full = len(server.log)
    records = _records(out)
    usage = read_manifest(out)["usage"]
    assert usage["cache_hits"] >= first and usage["calls_sent"] == full - first
    invoke(*args)  # re-run: nothing new is sent, same dataset
    assert len(server.log) == full
    assert sorted(r["id"] for r in _records(out)) == sorted(r["id"] for r in records)
    assert server.duplicates() == {}


def test_user_errors_are_one_line(tmp_path, server):
    with pytest.raises(MedmillError, match="no such file"):
        invoke(
            tmp_path / "missing.txt",
            "--out",
            tmp_path / "o",
            "--llm-base-url",
            server.base_url,
            "--llm-model",
            "x",
        )
    text = tmp_path / "a.txt"
    text.write_text("高血压是常见病。", encoding="utf-8")
    with pytest.raises(MedmillError, match="--llm-model"):
        invoke(text, "--out", tmp_path / "o", "--llm-base-url", server.base_url)
    with pytest.raises(MedmillError, match="chunk_overlap"):
        invoke(
            text, "--out", tmp_path / "o", "--llm-model", "x", "--chunk-size", "100", "--chunk-overlap", "100"
        )
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(MedmillError, match=r"no text chunks.*empty\.txt holds no text"):
        invoke(empty, "--out", tmp_path / "o", "--llm-model", "x", "--llm-base-url", server.base_url)


def test_config_file_sets_options(tmp_path, server, examples_dir):
    config = tmp_path / "medmill.yaml"
    config.write_text(
        "llm_model: fake\nbuild-book-qa:\n  questions_per_chunk: 2\n  chunk_size: 300\n  chunk_overlap: 30\n"
        "  question_types: [概念, 治疗, 预后]\n",  # a YAML list, not a comma string
        encoding="utf-8",
    )
    out = tmp_path / "qa"
    invoke(
        examples_dir / "texts" / "infectious_textbook.txt",
        "--out",
        out,
        "--config",
        config,
        "--llm-base-url",
        server.base_url,
    )
    params = read_manifest(out)["params"]
    assert params["qa"]["questions_per_chunk"] == 2 and params["chunking"]["chunk_size"] == 300
    assert params["qa"]["question_types"] == ["概念", "治疗", "预后"]
    assert all(len(r["meta"]["reference"]) >= 1 for r in _records(out))
    questions_bodies = [
        b for b in server.bodies() if "请根据这段资料提出 2 个" in b["messages"][-1]["content"]
    ]
    assert questions_bodies
