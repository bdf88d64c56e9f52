"""medmill export: each trainer's exact JSON Lines format, read back and checked record by record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.builders.publish.export import export_dir
from medmill.cli import _register, app
from medmill.schemas.dataset_dir import iter_rows
from medmill.schemas.errors import MedmillError
from tests.test_card import make_dir

SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}


def read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def source_rows(d: Path, split: str) -> list[dict]:
    return [row for _s, _f, _i, row in iter_rows(d, split)]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    return {kind: make_dir(tmp, kind, n=12) for kind in ("sft", "preference", "pretrain")}


def test_sft_sharegpt_and_medicalgpt(dirs, tmp_path):
    src = source_rows(dirs["sft"], "train")
    for fmt in ("sharegpt", "medicalgpt"):
        out = tmp_path / f"{fmt}.jsonl"
        res = export_dir(dirs["sft"], fmt, out)
        rows = read_jsonl(out)
        assert res.files == {str(out): len(src)} and len(rows) == len(src)
        for row, rec in zip(rows, src, strict=True):
            assert set(row) == {"conversations"}
            assert row["conversations"] == [{"from": SHAREGPT[m["role"]], "value": m["content"]} for m in rec["messages"]]
        # MedicalGPT's own files are compact JSON with raw (unescaped) Chinese
        first = out.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith('{"conversations":[{"from":') and "\\u" not in first


def test_sft_alpaca_keeps_history_and_system(dirs, tmp_path):
    out = tmp_path / "alpaca.jsonl"
    export_dir(dirs["sft"], "alpaca", out, split="all")
    rows = read_jsonl(out)
    src = source_rows(dirs["sft"], "train") + source_rows(dirs["sft"], "validation")
    multi = 0
    for row, rec in zip(rows, src, strict=True):
        assert set(row) == {"instruction", "input", "output", "system", "history"}
        body = [m for m in rec["messages"] if m["role"] != "system"]
        assert row["instruction"] == body[-2]["content"] and row["output"] == body[-1]["content"]
        assert row["history"] == [[body[i]["content"], body[i + 1]["content"]] for i in range(0, len(body) - 2, 2)]
        assert row["system"] == "".join(m["content"] for m in rec["messages"] if m["role"] == "system")
        multi += bool(row["history"])
    assert multi > 0  # the fixture has multi-turn records, so history is exercised


def test_sft_openai_messages(dirs, tmp_path):
    out = tmp_path / "openai.jsonl"
    export_dir(dirs["sft"], "openai", out, split="all")
    rows = read_jsonl(out)
    src = source_rows(dirs["sft"], "train") + source_rows(dirs["sft"], "validation")
    assert [r["messages"] for r in rows] == [rec["messages"] for rec in src]


def test_sft_llamafactory_folder_and_dataset_info(dirs, tmp_path):
    out = tmp_path / "lf"
    res = export_dir(dirs["sft"], "llamafactory", out, name="med_sft")
    assert sorted(Path(p).name for p in res.files) == ["train.jsonl", "validation.jsonl"]
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["med_sft_train"] == {
        "file_name": "train.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", "system_tag": "system"},
    }
    for row, rec in zip(read_jsonl(out / "train.jsonl"), source_rows(dirs["sft"], "train"), strict=True):
        turns = row["conversations"]
        assert all(t["from"] != "system" for t in turns)  # system goes to its own column
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)  # LLaMA-Factory: alternating
        assert row["system"] == "".join(m["content"] for m in rec["messages"] if m["role"] == "system")


def test_dataset_info_merges_with_existing_entries(dirs, tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alpaca_zh": {"file_name": "a.json"}}), encoding="utf-8")
    export_dir(dirs["preference"], "llamafactory", tmp_path / "dpo.jsonl", name="med_dpo")
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["alpaca_zh"] == {"file_name": "a.json"}
    assert info["med_dpo"]["ranking"] is True and info["med_dpo"]["file_name"] == "dpo.jsonl"
    assert info["med_dpo"]["columns"] == {
        "messages": "conversations",
        "chosen": "chosen",
        "rejected": "rejected",
        "system": "system",
    }


def test_preference_medicalgpt_current_format(dirs, tmp_path):
    out = tmp_path / "rm.jsonl"
    export_dir(dirs["preference"], "medicalgpt", out)
    for row, rec in zip(read_jsonl(out), source_rows(dirs["preference"], "train"), strict=True):
        assert set(row) == {"conversations", "chosen", "rejected"}
        assert row["conversations"] == [{"from": SHAREGPT[m["role"]], "value": m["content"]} for m in rec["prompt"]]
        assert row["conversations"][-1]["from"] == "human"
        assert row["chosen"] == rec["chosen"][0]["content"] and row["rejected"] == rec["rejected"][0]["content"]


def test_preference_legacy_format_skips_what_it_cannot_hold(dirs, tmp_path):
    out = tmp_path / "legacy.jsonl"
    res = export_dir(dirs["preference"], "medicalgpt-legacy", out)
    src = source_rows(dirs["preference"], "train")
    single = [r for r in src if len(r["prompt"]) == 1]
    rows = read_jsonl(out)
    assert len(rows) == len(single) and res.skipped["multi_turn_or_system_prompt"] == len(src) - len(single) > 0
    for row, rec in zip(rows, single, strict=True):
        assert row == {
            "question": rec["prompt"][0]["content"],
            "response_chosen": rec["chosen"][0]["content"],
            "response_rejected": rec["rejected"][0]["content"],
        }


def test_preference_llamafactory_ranking_rows(dirs, tmp_path):
    out = tmp_path / "lf.jsonl"
    export_dir(dirs["preference"], "llamafactory", out)
    for row, rec in zip(read_jsonl(out), source_rows(dirs["preference"], "train"), strict=True):
        assert row["chosen"] == {"from": "gpt", "value": rec["chosen"][0]["content"]}
        assert row["rejected"] == {"from": "gpt", "value": rec["rejected"][0]["content"]}
        assert len(row["conversations"]) % 2 == 1 and row["conversations"][-1]["from"] == "human"


def test_preference_openai_and_alpaca(dirs, tmp_path):
    export_dir(dirs["preference"], "openai", tmp_path / "o.jsonl")
    src = source_rows(dirs["preference"], "train")
    for row, rec in zip(read_jsonl(tmp_path / "o.jsonl"), src, strict=True):
        assert row == {
            "input": {"messages": rec["prompt"]},
            "preferred_output": rec["chosen"],
            "non_preferred_output": rec["rejected"],
        }
    res = export_dir(dirs["preference"], "alpaca", tmp_path / "a.jsonl")
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert len(rows) + res.skipped["multi_turn_prompt"] == len(src)
    assert all(set(r) == {"instruction", "input", "chosen", "rejected", "system"} for r in rows)


@pytest.mark.parametrize("fmt", ["medicalgpt", "llamafactory"])
def test_pretrain_exports_text(dirs, tmp_path, fmt):
    out = tmp_path / "pt.jsonl"
    export_dir(dirs["pretrain"], fmt, out)
    assert read_jsonl(out) == [{"text": r["text"]} for r in source_rows(dirs["pretrain"], "train")]
    if fmt == "llamafactory":
        info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
        assert info["pretrain"] == {"file_name": "pt.jsonl", "columns": {"prompt": "text"}}


def test_bad_requests_are_one_line_errors(dirs, tmp_path):
    with pytest.raises(MedmillError, match="does not apply to pretrain"):
        export_dir(dirs["pretrain"], "alpaca", tmp_path / "x.jsonl")
    with pytest.raises(MedmillError, match="no split 'test'"):
        export_dir(dirs["sft"], "openai", tmp_path / "x.jsonl", split="test")
    with pytest.raises(MedmillError, match="not a directory"):
        export_dir(tmp_path / "nope", "openai", tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(MedmillError, match="cannot write the export to "):  # was a traceback
        export_dir(dirs["sft"], "openai", tmp_path / "file" / "x.jsonl")


def test_cli_export(dirs, tmp_path):
    _register()
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(app, ["export", str(dirs["preference"]), "--format", "medicalgpt-legacy", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped: multi_turn_or_system_prompt" in result.output
    assert len(read_jsonl(out)) > 0


def test_cli_says_which_splits_a_single_file_left_out(dirs, tmp_path):
    _register()
    out = tmp_path / "one.jsonl"
    result = CliRunner().invoke(app, ["export", str(dirs["sft"]), "--format", "openai", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "not exported: validation" in result.output  # once silent: only train went to the file
    result = CliRunner().invoke(app, ["export", str(dirs["sft"]), "--format", "openai", "--out", str(out), "--split", "all"])
    assert result.exit_code == 0 and "not exported" not in result.output
