"""`--max-compare` (dedup) and `--dedup-max-compare` (builds): a candidate is compared with the first N
kept records it shares an LSH bucket with. On a crowded bucket a near-copy of a late record is only
found when N reaches back to it; the streamed and the in-memory decision agree for any N."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from medmill.cli import app
from medmill.schemas.errors import MedmillError
from tests.curation.test_curation_cli import make_dir, rows, sft
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


def test_a_near_copy_behind_a_crowded_bucket_needs_enough_comparisons(tmp_path):
    src = _crowded(tmp_path / "in")
    few = _dedup(src, tmp_path / "few", "--max-compare", "5")
    enough = _dedup(src, tmp_path / "enough")  # the default, 64
    assert few["records_total"] == 21 and few["curation"]["dedup"]["near_duplicates"] == 0
    assert enough["records_total"] == 20 and enough["curation"]["dedup"]["near_duplicates"] == 1
    assert few["params"]["max_compare"] == 5


def test_streamed_and_in_memory_agree_for_a_small_max_compare(tmp_path):
    src = _crowded(tmp_path / "in")
    _dedup(src, tmp_path / "memory", "--max-compare", "5", "--executor", "memory")
    _dedup(src, tmp_path / "stream", "--max-compare", "5", "--workers", "2")
    assert digest(tmp_path / "stream") == digest(tmp_path / "memory")


def test_a_bad_max_compare_is_a_one_line_error(tmp_path):
    src = _crowded(tmp_path / "in")
    r = CliRunner().invoke(app, ["dedup", *map(str, src), "--out", str(tmp_path / "o"), "--max-compare", "0"])
    assert isinstance(r.exception, MedmillError) and "--max-compare must be at least 1" in str(r.exception)
