"""Issue 12 #22: messages that misled - "at at column", one broken element reported 13 times,
"File exists" for a parent that is a file, partial llamafactory exports, Ctrl-C talking about LLM
calls that never happened. (CSV extra fields: test_hardening_readers; a string config section:
test_hardening_config.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmill.builders.readers.kg import read_kg
from medmill.builders.readers.textio import DecodedText, iter_json_items
from tests.hardening_cli import cli, one_line_error
from tests.schemas.test_hardening_datasets import sft_dir

RECORDS = [
    {"中心词": "高血压", "症状": ["头痛", "眩晕"], "检查": ["血压测量"], "科室": "心内科"},
    {"中心词": "糖尿病", "症状": ["多饮", "多尿", "多食"], "检查": ["血糖", "糖化血红蛋白"], "科室": "内分泌科"},
    {"中心词": "胃炎", "症状": ["上腹痛", "反酸"], "检查": ["胃镜检查"], "科室": "消化内科"},
]


def _items(text: str):
    return list(iter_json_items(DecodedText(Path("x.json"), text, "utf-8")))


def test_json_errors_never_say_at_at():
    errors = [i.error for i in _items('{"a": 1}\n{"a": "abc\n') + _items('[\n{"a": 1},\n{"a": "ab') if i.error]
    assert errors and all(" at at " not in e and not e.rstrip().endswith(" at") and "at (" not in e for e in errors)
    assert "Unterminated string (column 7)" in errors[0]  # before: "Unterminated string starting at at column 7"


def test_truncated_pretty_printed_array_is_one_reject(tmp_path):
    text = json.dumps(RECORDS[:2], ensure_ascii=False, indent=2)
    f = tmp_path / "kg.json"
    f.write_text(text[: len(text) - 30], encoding="utf-8")  # cut inside the second element
    result = read_kg([f])
    assert [e.name for e in result.entities] == ["高血压"]
    assert len(result.rejects) == 1  # before: 9 rejects (invalid_json / not_an_object per inner line)
    assert "ends inside this array element" in result.rejects[0].message
    assert result.rejects[0].source.line == text[: text.index('"糖尿病"')].count("\n")  # the element's `{` line


def test_broken_middle_element_of_a_pretty_array_costs_only_itself(tmp_path):
    text = json.dumps(RECORDS, ensure_ascii=False, indent=2).replace('"多尿",', '"多尿"', 1)  # a missing comma
    f = tmp_path / "kg.json"
    f.write_text(text, encoding="utf-8")
    result = read_kg([f])
    assert sorted(e.name for e in result.entities) == ["胃炎", "高血压"]
    assert len(result.rejects) == 1 and result.rejects[0].reason == "invalid_json"


@pytest.mark.parametrize("command", ["build-kg-qa", "dedup", "export", "report"])
def test_out_under_a_file_says_the_parent_is_a_file(tmp_path, monkeypatch, capsys, command):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    kg = tmp_path / "kg.csv"
    kg.write_text("head,relation,tail\n高血压,症状,头痛\n", encoding="utf-8")
    ds = sft_dir(tmp_path / "ds")
    args = {
        "build-kg-qa": ["build-kg-qa", kg, "--out", tmp_path / "afile" / "sub"],
        "dedup": ["dedup", ds, "--out", tmp_path / "afile" / "sub"],
        "export": ["export", ds, "-f", "sharegpt", "--out", tmp_path / "afile" / "sub"],
        "report": ["report", ds, "--out", tmp_path / "afile" / "r.html"],
    }[command]
    line = one_line_error(*cli(monkeypatch, capsys, *args))
    assert "afile is a file, not a folder" in line and "File exists" not in line


def test_failed_llamafactory_export_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    ds = sft_dir(tmp_path / "ds")
    out = tmp_path / "lf"
    out.mkdir()
    (out / "dataset_info.json").write_text("{broken", encoding="utf-8")
    line = one_line_error(*cli(monkeypatch, capsys, "export", ds, "-f", "llamafactory", "--out", out))
    assert "dataset_info.json exists but is not valid JSON" in line
    assert sorted(p.name for p in out.iterdir()) == ["dataset_info.json"]  # before: train.jsonl was left


def test_failed_export_removes_the_folders_it_made(tmp_path, monkeypatch, capsys):
    import medmill.builders.publish.export as export

    def broken(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_jsonl_tmp", broken)
    ds = sft_dir(tmp_path / "ds")
    line = one_line_error(*cli(monkeypatch, capsys, "export", ds, "-f", "sharegpt", "--out", tmp_path / "new" / "deep"))
    assert "No space left on device" in line and not (tmp_path / "new").exists()


def _interrupt(*_a, **_k):
    raise KeyboardInterrupt


def test_ctrl_c_in_a_template_build_does_not_talk_about_llm_calls(tmp_path, monkeypatch, capsys):
    import medmill.builders.kg_qa.build as kg_build
    import medmill.builders.llm.cache as cache

    monkeypatch.setattr(cache, "_opened", [], raising=False)  # no LLM cache opened earlier in this process
    monkeypatch.setattr(kg_build, "read_kg", _interrupt)
    kg = tmp_path / "kg.csv"
    kg.write_text("head,relation,tail\n高血压,症状,头痛\n", encoding="utf-8")
    code, output = cli(monkeypatch, capsys, "build-kg-qa", kg, "--out", tmp_path / "out")
    assert code == 130 and "interrupted" in output
    assert "LLM" not in output  # before: "finished LLM calls are cached"


def test_ctrl_c_in_train_talks_about_checkpoints(tmp_path, monkeypatch, capsys):
    import medmill.builders.llm.cache as cache
    import medmill.trainers.run as run

    monkeypatch.setattr(cache, "_opened", [], raising=False)
    monkeypatch.setattr(run, "run_training", _interrupt)
    code, output = cli(monkeypatch, capsys, "train", "sft", "--model", tmp_path, "--data", tmp_path, "--out", tmp_path / "r")
    assert code == 130 and "checkpoint" in output and "LLM" not in output


def test_ctrl_c_after_llm_calls_through_a_cache_mentions_the_cache(tmp_path, monkeypatch):
    import medmill.builders.llm.cache as cache
    from medmill.cli import _interrupt_hint

    monkeypatch.setattr(cache, "_opened", [])
    assert "LLM" not in _interrupt_hint()
    cache.RequestCache(tmp_path / "c.sqlite")
    assert "finished LLM calls are cached" in _interrupt_hint()
