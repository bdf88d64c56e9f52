"""medmill build-self-instruct against the local test server: reaches N, card counts, kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medmill.cli import _register, app
from tests.llm_server import FakeLLMServer, Faults, KillSwitch
from tests.self_instruct.fake_model import self_instruct_model, write_seeds


def cli(args: list[str]):
    _register()
    return CliRunner().invoke(app, args)


def args_for(server: FakeLLMServer, seeds: Path, out: Path, num: int = 24) -> list[str]:
    return ["build-self-instruct", "--seeds", str(seeds), "--out", str(out), "--num", str(num), "--per-request", "3",
            "--round-size", "3", "--llm-base-url", server.base_url, "--llm-model", "fake-med", "--no-dedup"]


def rows_of(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    return sorted((row for s in manifest["splits"].values() for f in s["files"] for row in pq.read_table(out / f).to_pylist()),
                  key=lambda r: r["id"])


@pytest.mark.slow
def test_reaches_n_with_category_counts_in_manifest_and_card(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seeds.json")
    out = tmp_path / "out"
    with FakeLLMServer(responder=self_instruct_model) as server:
        result = cli(args_for(server, seeds, out) + ["--categories", "营养建议", "--test-size", "0.2"])
        assert result.exit_code == 0, result.output
        bodies = server.bodies()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records_total"] == 24
    counts = {k.removeprefix("category."): v for k, v in manifest["counters"].items() if k.startswith("category.")}
    assert len(counts) == 9 and "营养建议" in counts and sum(counts.values()) == 24
    assert max(counts.values()) - min(counts.values()) <= 3
    assert manifest["counters"]["rejected.near_copy"] >= 1 and manifest["rejects_by_reason"]["novelty/near_copy"] >= 1
    assert "test" in manifest["splits"]
    card = (out / "README.md").read_text()
    assert "category.营养建议" in card and "营养建议" in card
    assert all(b["response_format"]["type"] == "json_schema" for b in bodies)
    assert manifest["usage"]["calls_sent"] == len(bodies) == manifest["counters"]["requests"]
    assert cli(["validate", str(out)]).exit_code == 0
    from datasets import load_dataset

    ds = load_dataset(str(out))
    assert sum(len(ds[s]) for s in ds) == 24
    meta = json.loads(ds["train"][0]["meta"])
    assert meta["task"] == "self_instruct" and meta["category"] in counts and meta["prompt"] == "self_instruct@1"


def test_dialogues_with_turns(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seeds.json")
    with FakeLLMServer(responder=self_instruct_model) as server:
        result = cli(args_for(server, seeds, tmp_path / "out", num=6) + ["--turns", "3"])
        assert result.exit_code == 0, result.output
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 6 and all([m["role"] for m in r["messages"]] == ["user", "assistant"] * 3 for r in rows)


@pytest.mark.slow
def test_kill_9_then_rerun_pays_nothing_twice_and_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seeds.json")
    env = {**os.environ, "OPENAI_API_KEY": "k"}
    extra = ["--max-retries", "8", "--test-size", "0.1"]
    with FakeLLMServer(responder=self_instruct_model, latency=0.1) as server:
        switch = KillSwitch(server, after=4, rates=Faults(rate_429=0.1, rate_500=0.05, seed=5))
        server.faults = Faults(script=switch)
        cmd = [sys.executable, "-m", "medmill.cli", *args_for(server, seeds, tmp_path / "out", num=30), *extra]
        switch.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        switch.proc.wait(timeout=120)
        assert switch.proc.returncode == -signal.SIGKILL and switch.state == "killed"
        assert not (tmp_path / "out" / "manifest.json").exists()
        paid_before = sum(server.served.values())
        assert paid_before >= 4

        server.faults = Faults(rate_429=0.1, rate_500=0.05, seed=6)
        resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert server.duplicates() == {}  # no completion paid twice
        paid_total = sum(server.served.values())
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert manifest["usage"]["cache_hits"] >= paid_before
        assert manifest["usage"]["calls_sent"] - manifest["usage"]["retries"] == paid_total - paid_before

    with FakeLLMServer(responder=self_instruct_model) as fresh:
        clean = cli([*args_for(fresh, seeds, tmp_path / "clean", num=30), *extra])
        assert clean.exit_code == 0, clean.output
        assert sum(fresh.served.values()) == paid_total  # the interrupted run paid exactly what one run pays
    assert rows_of(tmp_path / "out") == rows_of(tmp_path / "clean")
    assert manifest["records_total"] == 30
