"""medmill build-tasks end to end: mcq/ner/cls offline on bundled examples and samples, rc on the test server;
every output passes validate and loads with datasets.load_dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.builders.tasks.rc import find_span
from medmill.cli import _register, app
from medmill.schemas.errors import MedmillError
from tests.llm_server import FakeLLMServer


def cli(args: list[str]):
    _register()
    return CliRunner().invoke(app, args)


def check_dir(out: Path, task: str) -> tuple[dict, object]:
    """validate passes, datasets loads it, there is an eval split, every record is of the task."""
    from datasets import load_dataset

    assert cli(["validate", str(out)]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "test" in manifest["splits"] and manifest["splits"]["test"]["records"] > 0
    ds = load_dataset(str(out))
    assert sum(len(ds[s]) for s in ds) == manifest["records_total"]
    assert all(json.loads(m)["task"] == task for s in ds for m in ds[s]["meta"])
    return manifest, ds


@pytest.mark.slow
def test_mcq_on_the_example_kg(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "mcq"
    result = cli(["build-tasks", "--task", "mcq", str(examples_dir / "kg"), "--out", str(out), "--style", "cmexam"])
    assert result.exit_code == 0, result.output
    manifest, ds = check_dir(out, "mcq")
    assert manifest["records_total"] > 200 and manifest["counters"]["keys_verified"] == manifest["records_total"]
    row = ds["test"][0]
    meta = json.loads(row["meta"])
    assert set(meta) >= {"task", "question", "options", "answer", "category"}
    assert re.fullmatch(r"[A-H]", meta["answer"]) and meta["answer"] in meta["options"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    # grouped by entity: no entity in both train and test
    ents = {s: {json.loads(m)["entity"] for m in ds[s]["meta"]} for s in ("train", "test")}
    assert not ents["train"] & ents["test"]


@pytest.mark.slow  # imports datasets to load the dir
def test_ner_on_example_texts_and_kg(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "ner"
    result = cli(["build-tasks", "--task", "ner", str(examples_dir / "texts"), "--kg", str(examples_dir / "kg"),
                  "--out", str(out), "--test-size", "0.2"])
    assert result.exit_code == 0, result.output
    manifest, _ = check_dir(out, "ner")
    assert manifest["counters"]["entities_tagged"] >= 40
    missing = cli(["build-tasks", "--task", "ner", str(examples_dir / "texts"), "--out", str(tmp_path / "x")])
    assert isinstance(missing.exception, MedmillError) and "--kg" in str(missing.exception)


@pytest.mark.slow  # imports datasets to load the dir
def test_cls_on_the_toyhom_sample(tmp_path: Path, samples_dir: Path) -> None:
    out = tmp_path / "cls"
    result = cli(["build-tasks", "--task", "cls", str(samples_dir / "toyhom_IM_sample.csv"), "--out", str(out),
                  "--test-size", "0.2"])
    assert result.exit_code == 0, result.output
    manifest, _ = check_dir(out, "cls")
    assert manifest["counters"]["labels"] >= 2


def test_unknown_task_is_one_line_error(tmp_path: Path, examples_dir: Path) -> None:
    result = cli(["build-tasks", "--task", "diagnosis", str(examples_dir / "kg"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, MedmillError) and "unknown --task" in str(result.exception)


def rc_model(body: dict) -> str:
    text = re.search(r"<text>\n(.*?)\n</text>", body["messages"][-1]["content"], re.S).group(1)
    first = re.split(r"[。；\n]", text.strip())[0][:30]
    spaced = " ".join(first[:6])  # whitespace the text does not have: still its span
    return json.dumps({"pairs": [
        {"question": "这段文字开头讲了什么？", "answer": first},
        {"question": "开头几个字是什么？", "answer": spaced},
        {"question": "文中说的治疗药物是什么？", "answer": "一种文中没有的神奇药物"},
        {"question": f"{first}是什么意思？", "answer": first},
    ]}, ensure_ascii=False)


@pytest.mark.slow
def test_rc_answers_are_verified_spans(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "rc"
    with FakeLLMServer(responder=rc_model) as server:
        result = cli(["build-tasks", "--task", "rc", str(examples_dir / "texts"), "--out", str(out), "--test-size", "0.2",
                      "--llm-base-url", server.base_url, "--llm-model", "fake", "--no-dedup"])
        assert result.exit_code == 0, result.output
        chunks = len(server.bodies())
    manifest, ds = check_dir(out, "rc")
    reasons = manifest["rejects_by_reason"]
    assert reasons["build/answer_not_in_text"] == chunks and reasons["build/answer_in_question"] == chunks
    for split in ds:
        for row in ds[split]:
            meta = json.loads(row["meta"])
            text = row["messages"][0]["content"].split("<text>", 1)[1].split("\n<question>", 1)[0]
            assert text[meta["answer_start"]:meta["answer_start"] + len(meta["answer"])] == meta["answer"]
            assert row["messages"][-1]["content"] == meta["answer"]
    assert manifest["records_total"] == 2 * chunks


@pytest.mark.parametrize(("answer", "expected"), [
    ("舒张压≥90 mmHg", "舒张压≥90 mmHg"), ("舒张压≥90mmHg", "舒张压≥90 mmHg"), ("高血压", "高血压"),
    ("收缩压>=140", None), ("低血压", None), ("", None),
])
def test_find_span(answer: str, expected: str | None) -> None:
    text = "收缩压≥140 mmHg和（或）舒张压≥90 mmHg，可诊断为高血压"
    span = find_span(answer, text)
    assert (text[span[0]:span[1]] if span else None) == expected
