"""medmill report: a self-contained HTML page, checked as text and rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.publish.card import render_card
from medmill.builders.publish.report import render_report, write_report
from medmill.cli import _register, app
from medmill.schemas import Message, RejectRow, SFTRecord, Source
from tests.publish.test_card import make_dir

SECTIONS = ("counts", "lengths", "categories", "samples", "rejects", "duplicates", "pii")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium is not installed (.ci/run installs it)")


def run_chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chrome-profile'}", *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=tmp)


def console_lines(stderr: str) -> list[str]:
    """Console messages and uncaught exceptions Chromium logs with --enable-logging=stderr."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class ResourceRefs(HTMLParser):
    """Every src/href of the page: a self-contained page references only #anchors and data: URIs."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("report")
    sft = make_dir(tmp, "sft", n=12)
    clusters = [
        {
            "kept_id": "a1",
            "kept_text": "糖尿病的症状有多饮、多尿。",
            "members": [{"id": "b2", "text": "糖尿病症状：多饮多尿。", "similarity": 0.91}],
        },
        {"unexpected": "shape"},
    ]
    lines = [json.dumps(c, ensure_ascii=False) for c in clusters] + ["not json"]
    (sft / "clusters.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # a record whose text looks like markup must show as text, never run
    msgs = [Message(role="user", content="<script>alert(1)</script>头痛？"), Message(role="assistant", content="多休息。" * 80)]
    hostile = tmp / "hostile"
    write_dataset_dir(
        hostile,
        [SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="t"), meta={})],
        [RejectRow(stage="pii", reason="phone", message="<b>138****</b>", raw="电话 13800000000")],
        BuildInfo(kind="sft", builder="t", command="medmill t"),
    render_card=render_card)
    (hostile / "rejects.jsonl").open("a", encoding="utf-8").write("{broken\n")
    return [sft, make_dir(tmp, "preference"), make_dir(tmp, "pretrain"), hostile]


def test_report_has_every_section_for_every_dataset(dirs):
    html = render_report(dirs)
    assert html.count('class="dataset"') == 4 and 'id="comparison"' in html
    for section in SECTIONS:
        assert html.count(f'<h3 class="{section}">') == 4
    # counts, categories, samples as chat bubbles, rejects with examples, clusters, PII / safety
    assert "症状" in html and "meta.relation" in html and "meta.perturbation" in html
    assert 'class="row user"' in html and 'class="row assistant"' in html
    assert 'class="chosen"' in html and 'class="doc"' in html
    assert "read/bad_json" in html and "Expecting value" in html and "safety/dangerous_dosing" in html
    assert "糖尿病症状：多饮多尿。" in html and "similarity 0.91" in html
    assert "1 cluster(s)" in html and "2 cluster row(s) had another shape" in html
    assert "No duplicate clusters recorded" in html
    assert "pii_phone_masked" in html and "curation.safety" in html


def test_report_escapes_record_text_and_counts_bad_lines(dirs):
    html = render_report([dirs[-1]])
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>138****</b>" not in html and "pii/phone" in html
    assert "1 line(s) of rejects.jsonl could not be read" in html
    assert 'id="comparison"' not in html  # one dataset: no comparison table


def test_report_is_self_contained(dirs):
    parser = ResourceRefs()
    parser.feed(render_report(dirs))
    assert parser.refs and all(r.startswith(("#", "data:")) for r in parser.refs)


def test_cli_report(dirs, tmp_path):
    _register()
    out = tmp_path / "r" / "report.html"
    result = CliRunner().invoke(app, ["report", str(dirs[0]), str(dirs[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_unwritable_out_is_a_one_line_error(dirs, tmp_path):
    from medmill.schemas.errors import MedmillError

    with pytest.raises(MedmillError, match="cannot write the report to .*Is a directory"):  # was a traceback
        write_report([dirs[0]], tmp_path)


@pytest.mark.slow  # starts a headless Chromium
def test_console_check_catches_script_errors(tmp_path):
    """The browser check below can fail: a page with a script error is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><p>x</p><script>console.error('boom'); missingFn();</script></body></html>")
    run = run_chromium(page, tmp_path, "--dump-dom")
    assert any("missingFn" in line for line in console_lines(run.stderr))


@pytest.mark.slow  # starts a headless Chromium
def test_report_renders_in_chromium_without_console_errors(dirs, tmp_path):
    page = write_report(dirs, tmp_path / "report.html")
    run = run_chromium(page, tmp_path, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    assert console_lines(run.stderr) == []
    dom = run.stdout
    for section in SECTIONS:
        assert dom.count(f'<h3 class="{section}">') == 4
    assert "<svg" in dom and "疾病" in dom
    shot = tmp_path / "report.png"
    run = run_chromium(page, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clusters_come_from_the_manifest_when_there_is_no_clusters_jsonl(dirs, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(dirs[1], d)
    manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    manifest["curation"]["dedup"]["cluster_examples"] = [
        {"kept_id": "k1", "kept_text": "发热三天", "members": [{"id": "m1", "text": "发烧三天", "similarity": 0.85}]}
    ]
    (d / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    html = render_report([d])
    assert "1 cluster(s)" in html and "发烧三天" in html and "similarity 0.85" in html
    assert "cluster_examples" not in html  # not dumped into the statistics table


def test_dir_without_manifest_or_rejects_still_reports(dirs, tmp_path):
    d = tmp_path / "bare"
    shutil.copytree(dirs[2], d)
    (d / "manifest.json").unlink()
    (d / "rejects.jsonl").unlink()
    html = render_report([d])
    assert 'data-kind="pretrain"' in html and "No rejects (no rejects.jsonl)" in html
    assert "The manifest records no PII or safety findings" in html


def test_build_that_kept_no_record_reports_its_rejects(tmp_path):
    # e.g. `medmill dedup` against an --index that already holds every record: data/ has no shard
    d = tmp_path / "empty"
    write_dataset_dir(
        d,
        [],
        [RejectRow(stage="dedup", reason="exact_duplicate", message="already in the index", raw="头痛怎么办")],
        BuildInfo(kind="sft", builder="t", command="medmill t"),
    render_card=render_card)
    assert not list((d / "data").glob("*.parquet"))
    html = render_report([d])
    assert 'data-kind="sft"' in html and "dedup/exact_duplicate" in html and "already in the index" in html


def test_reject_examples_show_no_pii(tmp_path):
    # records dropped with --pii-action drop keep their raw text in rejects.jsonl; the page must not show it
    d = tmp_path / "pii"
    msgs = [Message(role="user", content="头痛怎么办？"), Message(role="assistant", content="多休息，必要时就医。")]
    write_dataset_dir(
        d,
        [SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="t"), meta={})],
        [RejectRow(stage="pii", reason="pii", message="PHONE in user turn", raw={"messages": [{"role": "user", "content": "我电话138 1234 5678，住院号：2023-001234"}]})],
        BuildInfo(kind="sft", builder="t", command="medmill filter"),
    render_card=render_card)
    html = render_report([d])
    assert "pii/pii" in html and "&lt;PHONE&gt;" in html and "&lt;PATIENT_ID&gt;" in html
    assert "1234 5678" not in html and "001234" not in html
