"""Issue 12 (curation commands): broken eval lines, kind mismatches, junk dedup indexes."""

from __future__ import annotations

import json
from pathlib import Path

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.schemas import Message, SFTRecord, Source
from medmill.schemas.dataset_dir import iter_rows
from tests.hardening_cli import cli, one_line_error

QA = [
    ("高血压患者日常生活中需要注意什么？", "高血压患者应低盐饮食，每日食盐不超过5克，规律运动，戒烟限酒，按时服药并监测血压。"),
    ("糖尿病患者可以吃水果吗？", "血糖控制平稳时可以在两餐之间适量吃低升糖指数的水果，如苹果、梨、柚子，并计入总热量。"),
    ("儿童发热应该怎么处理？", "儿童发热时可以先物理降温，多喝水，体温超过38.5度可以在医生指导下使用退热药。"),
    ("失眠该怎么调理？", "失眠患者要保持规律作息，睡前避免咖啡和浓茶，不要长时间看手机，必要时到睡眠门诊就诊。"),
]


def sft_dir(path: Path, pairs=QA) -> Path:
    recs = []
    for i, (q, a) in enumerate(pairs):
        m = [Message(role="user", content=q), Message(role="assistant", content=a)]
        recs.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"g{i}")))
    write_dataset_dir(path, recs, [], BuildInfo(kind="sft", builder="t", command="t"))
    return path


# ---- item 7: a broken eval line must not let a contaminated record through ----------------------


def _eval_with_broken_line(tmp_path: Path) -> Path:
    contaminated = QA[0][1]
    f = tmp_path / "eval.jsonl"
    f.write_text(
        json.dumps({"question": "失眠怎么办", "answer": "保持规律作息。"}, ensure_ascii=False) + "\n"
        + '{"question": "高血压", "answer": "' + contaminated + '"\n'  # broken: no closing brace
        + json.dumps({"question": "头痛", "answer": "休息。"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return f


def test_filter_decontaminate_broken_eval_line_is_an_error(tmp_path, monkeypatch, capsys):
    src, ev = sft_dir(tmp_path / "src"), _eval_with_broken_line(tmp_path)
    code, output = cli(monkeypatch, capsys, "filter", src, "--out", tmp_path / "out", "--decontaminate", ev)
    line = one_line_error(code, output)
    assert "eval.jsonl:2" in line and "--skip-bad-eval-lines" in line  # before: exit 0, line skipped silently


def test_filter_skip_bad_eval_lines_counts_them(tmp_path, monkeypatch, capsys):
    src, ev = sft_dir(tmp_path / "src"), _eval_with_broken_line(tmp_path)
    code, output = cli(
        monkeypatch, capsys, "filter", src, "--out", tmp_path / "out", "--decontaminate", ev, "--skip-bad-eval-lines"
    )
    assert code == 0, output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    flat = json.dumps(manifest, ensure_ascii=False)
    assert '"skipped_bad_eval_lines": 1' in flat
    assert len(list(iter_rows(tmp_path / "out"))) == len(QA)


def test_build_decontaminate_broken_eval_line_is_an_error_too(tmp_path, monkeypatch, capsys):
    kg = tmp_path / "kg.csv"
    kg.write_text("head,relation,tail\n高血压,症状,头痛\n高血压,症状,眩晕\n", encoding="utf-8")
    ev = _eval_with_broken_line(tmp_path)
    code, output = cli(monkeypatch, capsys, "build-kg-qa", kg, "--out", tmp_path / "out", "--decontaminate", ev)
    assert "eval.jsonl:2" in one_line_error(code, output)
