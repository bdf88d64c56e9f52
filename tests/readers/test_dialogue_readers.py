"""Dialogue readers: every format on its real sample and on generated full-size files of the same shape."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medmill.builders.readers.dialogue import (
    Dialogue,
    ReaderOptions,
    RowProblem,
    collect_dialogue_inputs,
    parse_flattened_history,
    read_dialogue_file,
)
from medmill.schemas.errors import MedmillError
from tests.dialogue import corpora


def dialogues(f) -> list[Dialogue]:
    return [i for i in f.items if isinstance(i, Dialogue)]


def problems(f) -> Counter:
    return Counter(i.reason for i in f.items if isinstance(i, RowProblem))


# --- real samples ---------------------------------------------------------------------------------

SAMPLE_FORMATS = {
    "toyhom_IM_sample.csv": ("toyhom", "gb18030", 55),
    "toyhom_IM_txt_sample.txt": ("toyhom-txt", "gb18030", 20),
    "chatdoctor_genmedgpt5k_sample.json": ("alpaca", "utf-8", 50),
    "huatuo_llama_data_sample.json": ("alpaca", "utf-8", 50),
    "huatuo_liver_cancer_sample.json": ("bentsao", "utf-8", 50),
    "medicalgpt_medical_sft_sample.jsonl": ("sharegpt", "utf-8", 50),
    "medicalgpt_reward_medical_sample.jsonl": ("medicalgpt-reward", "utf-8", 50),
    "medicalgpt_dpo_zh_sample.jsonl": ("sharegpt", "utf-8", 20),
}


@pytest.mark.parametrize("name", sorted(SAMPLE_FORMATS))
def test_real_sample_detected_and_read_whole(samples_dir: Path, name: str):
    fmt, encoding, rows = SAMPLE_FORMATS[name]
    f = read_dialogue_file(samples_dir / name, name)
    assert (f.format, f.encoding, f.rows_read) == (fmt, encoding, rows)
    assert not problems(f)
    for d in dialogues(f):
        roles = [r for r, _ in d.turns if r != "system"]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(t.strip() for _, t in d.turns)


def test_toyhom_sample_multiline_cells_and_no_ask(samples_dir: Path):
    f = read_dialogue_file(samples_dir / "toyhom_IM_sample.csv", "t.csv")
    ds = dialogues(f)
    # quoted multi-line answers stay one cell: some answers hold newlines, and no row is ragged
    assert sum("\n" in d.turns[1][1] for d in ds) >= 1
    no_ask = [d for d in ds if d.raw["ask"].strip() == "无"]
    assert no_ask, "the sample holds rows with ask = 无"
    for d in no_ask:
        assert d.turns[0] == ("user", d.raw["title"])
    assert len({d.meta["department"] for d in ds}) == 11


def test_genmedgpt_shared_instruction_is_a_system_prompt(samples_dir: Path):
    f = read_dialogue_file(samples_dir / "chatdoctor_genmedgpt5k_sample.json", "c.json")
    for d in dialogues(f):
        assert d.turns[0] == ("system", "If you are a doctor, please answer the medical questions based on the patient's description.")
        assert d.turns[1] == ("user", d.raw["input"])
        assert "If you are a doctor" not in d.turns[1][1]


def test_bentsao_sample_histories_become_turns(samples_dir: Path):
    f = read_dialogue_file(samples_dir / "huatuo_liver_cancer_sample.json", "l.json")
    ds = dialogues(f)
    assert max(len(d.turns) for d in ds) >= 4
    for d in ds:
        assert [r for r, _ in d.turns] == ["user", "assistant"] * (len(d.turns) // 2)
        assert not any("<user>" in t or "<bot>" in t for _, t in d.turns)


def test_reward_and_dpo_files_read_from_the_chosen_side(samples_dir: Path):
    f = read_dialogue_file(samples_dir / "medicalgpt_reward_medical_sample.jsonl", "r.jsonl")
    first = json.loads((samples_dir / "medicalgpt_reward_medical_sample.jsonl").read_text(encoding="utf-8").split("\n")[0])
    assert dialogues(f)[0].turns == [("user", first["question"]), ("assistant", first["response_chosen"])]
    dpo = read_dialogue_file(samples_dir / "medicalgpt_dpo_zh_sample.jsonl", "d.jsonl")
    assert all(d.turns[-1][0] == "assistant" and d.meta["side"] == "chosen" for d in dialogues(dpo))


def test_unknown_shapes_are_refused_naming_file_and_expectation(samples_dir: Path):
    for name in ("cmekg_predicate.json", "tcmchat_choice_herb_sample.csv", "medicalgpt_pretrain_fever_textbook_sample.txt"):
        with pytest.raises(MedmillError) as e:
            read_dialogue_file(samples_dir / name, name)
        assert name in str(e.value) and "expected" in str(e.value)


# --- generated full-size files --------------------------------------------------------------------


@pytest.mark.slow  # 30k rows: the size of a real department file's tens of thousands
def test_generated_toyhom_csv_full_size_with_ragged_rows(tmp_path: Path):
    path = tmp_path / "内科5000-33000.csv"
    wrote = corpora.write_toyhom_csv(path, 30_000, ragged_every=997)
    f = read_dialogue_file(path, path.name)
    assert (f.format, f.encoding) == ("toyhom", "gb18030")
    assert f.rows_read == wrote["rows"]
    bad = [i for i in f.items if isinstance(i, RowProblem)]
    assert len(bad) == wrote["ragged"] and {b.reason for b in bad} == {"ragged_row"}
    # the reject names file and line; the line is the row's physical first line (multi-line cells counted)
    lines = path.read_text(encoding="gb18030").split("\n")
    for b in bad:
        assert b.message.startswith(f"{path.name}:{b.line}:")
        assert lines[b.line - 1].count(",") >= 2
    ds = dialogues(f)
    assert sum("\n" in d.turns[1][1] for d in ds) >= wrote["multiline"] - wrote["ragged"]
    assert sum(d.turns[0][1] == d.meta["title"] for d in ds) >= wrote["no_ask"] - 1


def test_generated_toyhom_txt(tmp_path: Path):
    path = tmp_path / "内科.txt"
    corpora.write_toyhom_txt(path, 5000)
    f = read_dialogue_file(path, path.name)
    assert (f.format, f.rows_read, len(dialogues(f))) == ("toyhom-txt", 5000, 5000)


def test_generated_genmedgpt_crlf_array(tmp_path: Path):
    path = tmp_path / "chatdoctor5k.json"
    corpora.write_genmedgpt(path, 5452)
    f = read_dialogue_file(path, path.name)
    assert (f.format, f.rows_read) == ("alpaca", 5452)
    assert all(d.turns[0][0] == "system" and "\r" not in d.turns[2][1] for d in dialogues(f))


def test_generated_huatuo_jsonl_in_json(tmp_path: Path):
    path = tmp_path / "llama_data.json"
    corpora.write_huatuo_jsonl(path, 8658)
    f = read_dialogue_file(path, path.name)
    assert (f.format, f.rows_read) == ("alpaca", 8658)
    assert all(len(d.turns) == 2 for d in dialogues(f))  # varying instructions: no system prompt


def test_generated_bentsao_one_line_array(tmp_path: Path):
    path = tmp_path / "liver_cancer.json"
    n = corpora.write_bentsao(path, 400)
    f = read_dialogue_file(path, path.name)
    assert (f.format, f.rows_read) == ("bentsao", n)
    assert all(d.line == 1 for d in dialogues(f))


def test_alpaca_input_joined_to_varying_instructions(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"instruction": "请回答：", "input": "高血压吃什么？", "output": "低盐饮食。"}, ensure_ascii=False) + "\n"
        + json.dumps({"instruction": "解释下面的症状", "input": "头晕", "output": "可能是低血压。"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    ds = dialogues(read_dialogue_file(path, "a.jsonl"))
    assert ds[0].turns[0] == ("user", "请回答：\n\n高血压吃什么？")
    assert ds[1].turns[0] == ("user", "解释下面的症状\n\n头晕")


def test_icliniq_answer_choice(tmp_path: Path):
    path = tmp_path / "iCliniq.json"
    rows = [{"input": f"I have pain {i}.", "answer_icliniq": f"Doctor {i}.", "answer_chatgpt": f"GPT {i}.",
             "answer_chatdoctor": f"CD {i}."} for i in range(3)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    f = read_dialogue_file(path, path.name)
    assert f.format == "icliniq" and dialogues(f)[1].turns[1] == ("assistant", "Doctor 1.")
    g = read_dialogue_file(path, path.name, options=ReaderOptions(answer_field="answer_chatgpt"))
    assert dialogues(g)[1].turns[1] == ("assistant", "GPT 1.")
    h = read_dialogue_file(path, path.name, options=ReaderOptions(answer_field="answer_missing"))
    assert problems(h) == Counter({"missing_field": 3})


def test_sharegpt_openai_roles_and_bad_rows(tmp_path: Path):
    path = tmp_path / "sft.jsonl"
    lines = [
        {"conversations": [{"from": "system", "value": "你是医生"}, {"from": "human", "value": "头痛怎么办"}, {"from": "gpt", "value": "多休息"}]},
        {"conversations": [{"from": "alien", "value": "?"}]},
        {"conversations": "not a list"},
        [1, 2],
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n{broken\n", encoding="utf-8")
    f = read_dialogue_file(path, path.name)
    assert f.format == "sharegpt"
    assert dialogues(f)[0].turns == [("system", "你是医生"), ("user", "头痛怎么办"), ("assistant", "多休息")]
    assert problems(f) == Counter({"unknown_role": 1, "missing_field": 1, "not_an_object": 1, "invalid_json": 1})
    assert sorted(p.line for p in f.items if isinstance(p, RowProblem)) == [2, 3, 4, 5]
    o = tmp_path / "o.json"
    o.write_text(json.dumps([{"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]}]))
    assert read_dialogue_file(o, "o.json").format == "openai"


def test_format_override_and_mismatch(tmp_path: Path, samples_dir: Path):
    f = read_dialogue_file(samples_dir / "huatuo_liver_cancer_sample.json", "l.json", fmt="alpaca")
    assert f.format == "alpaca" and any("<user>" in dialogues(f)[0].turns[0][1] for _ in [0])
    with pytest.raises(MedmillError, match="expects JSON"):
        read_dialogue_file(samples_dir / "toyhom_IM_sample.csv", "t.csv", fmt="sharegpt")
    with pytest.raises(MedmillError, match="unknown --format"):
        read_dialogue_file(samples_dir / "toyhom_IM_sample.csv", "t.csv", fmt="nope")


def test_parse_flattened_history():
    turns, why = parse_flattened_history(" <user>: 你好 <bot>: 您好，请讲 <user>: 头痛")
    assert why is None and turns == [("user", "你好"), ("assistant", "您好，请讲"), ("user", "头痛")]
    assert parse_flattened_history("前言 <user>: x")[1] is not None
    assert parse_flattened_history("没有标签")[1] == "no <user>: tag"


def test_folders_and_dataset_dirs_collected(tmp_path: Path):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    corpora.write_huatuo_jsonl(tmp_path / "corpus" / "a.json", 3)
    corpora.write_toyhom_txt(tmp_path / "corpus" / "sub" / "b.txt", 3)
    (tmp_path / "corpus" / "notes.md").write_text("ignored")
    found = collect_dialogue_inputs([tmp_path / "corpus"])
    assert [(n, d) for _, n, d in found] == [("corpus/a.json", False), ("corpus/sub/b.txt", False)]
    with pytest.raises(MedmillError):
        collect_dialogue_inputs([tmp_path / "missing.json"])


def test_toyhom_quote_never_closed_is_one_problem_and_later_rows_are_read(tmp_path: Path):
    path = tmp_path / "内科.csv"
    rows = [f"内科,头痛{i}怎么办,头痛{i}天了,建议休息观察" for i in range(6)]
    rows[3] = '内科,"胸闷怎么办,胸闷两天,建议心电图'  # the quote opened on line 5 never closes
    path.write_text("department,title,ask,answer\n" + "\n".join(rows) + "\n", encoding="utf-8")
    f = read_dialogue_file(path, path.name)
    assert f.format == "toyhom"
    bad = [i for i in f.items if isinstance(i, RowProblem)]
    assert [(b.line, b.reason) for b in bad] == [(5, "bad_csv")] and "never closed" in bad[0].message
    assert [d.turns[0][1] for d in dialogues(f)] == [f"头痛{i}天了" for i in (0, 1, 2, 4, 5)]
