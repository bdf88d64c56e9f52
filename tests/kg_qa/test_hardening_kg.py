"""Issue 12 (KG builds): every dropped question candidate is a reject row, not only a manifest counter."""

from __future__ import annotations

import json
from pathlib import Path

from tests.hardening_cli import cli


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


def test_long_text_attribute_without_punctuation_is_a_reject(tmp_path, monkeypatch, capsys):
    long_cause = "长期高盐饮食精神紧张遗传因素肥胖缺乏运动" * 80  # 1,600 characters, nowhere to cut
    kg = tmp_path / "kg.jsonl"
    kg.write_text(
        json.dumps({"中心词": "高血压", "类型": "疾病", "病因": long_cause, "症状": ["头痛", "眩晕"],
                    "简介": "高血压是以体循环动脉压升高为主要特征的临床综合征。",
                    "概述": "高血压是常见的慢性病。"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    code, output = cli(monkeypatch, capsys, "build-kg-qa", kg, "--out", tmp_path / "out", "--no-combined")
    assert code == 0, output
    rejects = {r["reason"]: r for r in _rejects(tmp_path / "out")}
    # before the fix: no reject at all, only manifest counters text_attributes_too_long / attributes_already_asked
    too_long = rejects["text_too_long"]
    assert too_long["source"]["file"].endswith("kg.jsonl") and too_long["source"]["line"] == 1
    assert "病因" in too_long["message"] and "1600 characters" in too_long["message"]
    assert rejects["attribute_already_asked"]["raw"]["attribute"] == "概述"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert json.dumps(manifest, ensure_ascii=False).count("text_too_long") >= 1
