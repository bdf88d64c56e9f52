"""The front door: --help, --version, validate, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medmill.builders.core.writer import ARROW_SCHEMAS, BuildInfo, write_dataset_dir
from medmill.builders.publish.card import render_card
from medmill.schemas import Message, SFTRecord, Source
from medmill.version import __version__
from tests.hardening_cli import run_medmill


def run_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medmill.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def run(monkeypatch, capsys):
    """`medmill ARGS` in this process (a fresh interpreter per call costs a second or two of imports);
    the real `python -m medmill.cli` is run by test_help_lists_commands_and_version."""
    return lambda *args: run_medmill(monkeypatch, capsys, *args)


def test_help_lists_commands_and_version(run):
    out = run_process("--help")  # the real `python -m medmill.cli`, in a fresh interpreter
    assert out.returncode == 0
    assert "validate" in out.stdout
    v = run("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"medmill {__version__}"


def _good_dir(path: Path) -> Path:
    recs = []
    for i in range(6):
        m = [Message(role="user", content=f"问{i}"), Message(role="assistant", content=f"答{i}")]
        recs.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"g{i}")))
    write_dataset_dir(path, recs, [], BuildInfo(kind="sft", builder="t", command="x"), render_card=render_card)
    return path


def test_validate_ok(run, tmp_path: Path):
    out = run("validate", str(_good_dir(tmp_path / "ds")))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK:" in out.stdout and "6 records" in out.stdout


def test_validate_reports_bad_records_with_location(run, tmp_path: Path):
    d = _good_dir(tmp_path / "ds")
    bad = [
        {"id": "a", "messages": [{"role": "user", "content": "问"}], "source": {"builder": "t"}, "meta": "{}"},
        {"id": "b", "messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "  "}], "source": {"builder": "t"}, "meta": "{}"},
        {"id": "b", "messages": [{"role": "bot", "content": "x"}], "source": {"builder": "t"}, "meta": "not json"},
    ]
    pq.write_table(pa.Table.from_pylist(bad, schema=ARROW_SCHEMAS["sft"]), d / "data" / "test-00000-of-00001.parquet")
    (d / "manifest.json").unlink()  # an added shard no longer matches the manifest; check the records themselves
    out = run("validate", str(d))
    assert out.returncode == 1
    assert "invalid records" in out.stdout
    assert "test-00000-of-00001.parquet row 0" in out.stdout and "last turn is user" in out.stdout
    assert "row 1" in out.stdout and "empty" in out.stdout
    assert "duplicate id b" in out.stdout
    assert "FAILED" in out.stdout


def test_validate_wrong_path_is_one_line_error(run, tmp_path: Path):
    out = run("validate", str(tmp_path / "missing"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "not a directory" in out.stderr


def test_validate_detects_manifest_mismatch(run, tmp_path: Path):
    d = _good_dir(tmp_path / "ds")
    m = json.loads((d / "manifest.json").read_text())
    m["splits"]["train"]["records"] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    out = run("validate", str(d))
    assert out.returncode == 1 and "manifest says train has 99 records" in out.stdout


def test_bad_config_section_key_is_a_usage_error_not_a_traceback(run, tmp_path: Path, examples_dir: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("build-kg-qa:\n  no_dedup: true\n", encoding="utf-8")
    out = run("build-kg-qa", str(examples_dir / "kg"), "--out", str(tmp_path / "o"), "--config", str(cfg))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "no_dedup" in out.stderr


def test_out_below_a_regular_file_is_one_line_error(run, tmp_path: Path, examples_dir: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run("build-kg-qa", str(examples_dir / "kg"), "--out", str(blocker / "sub"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_build_that_keeps_nothing_fails_but_leaves_its_rejects(run, tmp_path: Path):
    kg = tmp_path / "kg.jsonl"
    kg.write_text('{"中心词": "感冒"}\n{"中心词": \n', encoding="utf-8")
    out = run("build-kg-qa", str(kg), "--out", str(tmp_path / "o"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no records survived" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "o.rejects.jsonl").exists() and str(tmp_path / "o.rejects.jsonl") in out.stderr.replace("\n", "")
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys, tmp_path):
    import medmill.builders.llm.cache as cache
    import medmill.cli as cli

    monkeypatch.setattr(cache, "_opened", [])
    cache.RequestCache(tmp_path / "c.sqlite")  # a run that made LLM calls through the cache

    def interrupted(*a, **k):
        raise SystemExit(130)  # what typer turns KeyboardInterrupt into

    monkeypatch.setattr(cli, "_register", lambda: None)
    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 130
    assert "re-run the same command to resume" in capsys.readouterr().err


def test_rebuild_removes_reports_of_the_previous_build(tmp_path: Path):
    d = _good_dir(tmp_path / "ds")
    (d / "clusters.jsonl").write_text('{"kept_id": "old"}\n')
    (d / "llm_cache.sqlite").write_bytes(b"keep me")
    _good_dir(d)
    assert not (d / "clusters.jsonl").exists()
    assert (d / "llm_cache.sqlite").read_bytes() == b"keep me"


def test_file_system_refusals_are_one_line_errors_for_llm_builders(run, tmp_path: Path, examples_dir: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run(
        "build-lit-qa", str(examples_dir / "literature"), "--out", str(blocker / "sub"),
        "--llm-model", "m", "--llm-base-url", "http://127.0.0.1:9/v1",
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "file is a file, not a folder" in out.stderr


def _summary_labels(stdout: str) -> list[str]:
    """The first column of the summary table's rows (rich draws them between │ bars)."""
    return [line.split("│")[1].strip() for line in stdout.splitlines() if line.startswith("│") and line.count("│") >= 3]


def test_build_and_curate_summaries_show_each_time_once(run, tmp_path: Path):
    talks = tmp_path / "talks.jsonl"
    talks.write_text("".join(json.dumps({"instruction": f"第{i}天了，高血压头晕怎么办？", "output": f"建议第{i}天复测血压，按时服药，低盐饮食。"},
                                        ensure_ascii=False) + "\n" for i in range(6)), encoding="utf-8")
    built = run("build-dialogue", str(talks), "--out", str(tmp_path / "talks"))
    filtered = run("filter", str(tmp_path / "talks"), "--out", str(tmp_path / "filtered"))
    for result in (built, filtered):
        assert result.returncode == 0, result.stdout
        labels = _summary_labels(result.stdout)
        # the manifest's time stops where writing starts; the command's wall time includes the write
        assert labels.count("time until writing (s)") == 1 and labels.count("wall time incl. write (s)") == 1
        assert "time (s)" not in labels
        assert len(labels) == len(set(labels)), labels
