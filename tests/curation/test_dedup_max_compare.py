"""The candidate rule through the CLI: `--max-compare` / `--bucket-depth` (dedup) and
`--dedup-max-compare` / `--dedup-bucket-depth` (builds). A near-copy of the last of 20 records that all
share LSH buckets is found even with 5 comparisons: candidates are ranked by shared buckets, and the
copy shares most of its source's (ranking by order alone compared it with the 5 earliest and missed it).
The streamed and the in-memory decision agree for any limits."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from medmill.cli import app
from medmill.schemas.errors import MedmillError
from tests.curation.test_curation_cli import make_dir, rows, sft
from tests.hardening_cli import cli, one_line_error
from tests.streaming.test_streaming import digest

STEM = "患者主诉反复咳嗽咳痰伴有低热乏力数日门诊查体双肺呼吸音粗建议完善血常规胸片检查后对症治疗观察病情变化必要时复诊"


def _crowded(root):
    """Dir `a`: 20 records sharing a 56-character stem, each with its own 20-character tail (Jaccard ~0.55
    between any two: no near-copies at 0.6, but nearly all share an LSH bucket). Dir `b`: a 1-character
    edit of the record `a` lists last (Jaccard ~0.9 with it), so dedup meets it after all 20."""
    rng = random.Random(5)
    answers = [STEM + "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(20)) for _ in range(20)]
    a = make_dir(root / "a", [sft(f"问题{i}", ans, f"g{i}") for i, ans in enumerate(answers)])
    last = rows(a)[-1]["messages"]
    q, ans = last[0]["content"], last[1]["content"]
    b = make_dir(root / "b", [sft(q, ans[:-5] + "好" + ans[-4:], "copy")])
    return [a, b]


def _dedup(src, out, *flags):
    r = CliRunner().invoke(app, ["dedup", *map(str, src), "--out", str(out), "--no-fact-guard", *flags])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_a_near_copy_behind_a_crowded_bucket_is_found_with_few_comparisons(tmp_path):
    src = _crowded(tmp_path / "in")
    few = _dedup(src, tmp_path / "few", "--max-compare", "5")
    default = _dedup(src, tmp_path / "default")  # 64 comparisons, bucket depth 16
    for manifest in (few, default):
        assert manifest["records_total"] == 20 and manifest["curation"]["dedup"]["near_duplicates"] == 1
    compared = few["curation"]["dedup"]["exact_comparisons"], default["curation"]["dedup"]["exact_comparisons"]
    assert compared[0] <= 5 * 21 and compared[0] < compared[1]
    assert few["params"]["max_compare"] == 5 and few["curation"]["dedup"]["max_compare"] == 5
    assert default["params"]["bucket_depth"] == 16 == default["curation"]["dedup"]["bucket_depth"]


def test_a_shallow_bucket_depth_reaches_fewer_records(tmp_path):
    src = _crowded(tmp_path / "in")
    shallow = _dedup(src, tmp_path / "shallow", "--bucket-depth", "1")
    deep = _dedup(src, tmp_path / "deep", "--bucket-depth", "64")
    stats = shallow["curation"]["dedup"], deep["curation"]["dedup"]
    assert stats[0]["bucket_depth"] == 1 and stats[1]["bucket_depth"] == 64
    assert stats[0]["exact_comparisons"] < stats[1]["exact_comparisons"]


def test_streamed_and_in_memory_agree_for_small_limits(tmp_path):
    src = _crowded(tmp_path / "in")
    for flags in (("--max-compare", "2"), ("--bucket-depth", "2")):
        memory, stream = tmp_path / f"memory{flags[0]}", tmp_path / f"stream{flags[0]}"
        _dedup(src, memory, *flags, "--executor", "memory")
        _dedup(src, stream, *flags, "--workers", "2")
        assert digest(stream) == digest(memory)


def test_bad_limits_are_one_line_errors(tmp_path, monkeypatch, capsys):
    src = _crowded(tmp_path / "in")
    for flag in ("--max-compare", "--bucket-depth"):
        r = CliRunner().invoke(app, ["dedup", *map(str, src), "--out", str(tmp_path / "o"), flag, "0"])
        assert isinstance(r.exception, MedmillError) and f"{flag} must be at least 1" in str(r.exception)
    code, output = cli(monkeypatch, capsys, "build-pt", src[0], "--out", tmp_path / "pt", "--dedup-bucket-depth", "0")
    assert "--dedup-bucket-depth" in one_line_error(code, output)
    assert not (tmp_path / "pt").exists()


def test_a_build_passes_its_limits_to_dedup(tmp_path, monkeypatch, capsys):
    src = _crowded(tmp_path / "in")
    out = tmp_path / "pt"
    code, output = cli(monkeypatch, capsys, "build-pt", *src, "--out", out, "--dedup-max-compare", "3",
                       "--dedup-bucket-depth", "2", "--no-dedup-fact-guard", "--val-size", "0")
    assert code == 0, output
    stats = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["curation"]["dedup"]
    assert (stats["max_compare"], stats["bucket_depth"]) == (3, 2)
    assert stats["lsh_candidates"] >= 20 and stats["near_duplicates"] == 1
