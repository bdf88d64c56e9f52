"""LLM generation on workers (`--workers N`, `--executor ray`): each worker runs its own engine with
its share of the limits, all of them cache into the build's one request cache, and the dataset dir
(records, order, rejects, manifest usage) is the one a single process writes."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.builders.book_qa.generate import AnswerWork
from medmill.builders.book_qa.generate import QAConfig as BookQAConfig
from medmill.builders.core.collect import Collector
from medmill.builders.llm.cache import RequestCache
from medmill.builders.llm.engine import worker_limits
from medmill.builders.llm.map_step import LLMMapStep, add_usage, usage_counters, usage_from_counters
from medmill.builders.llm.types import LLMSettings
from medmill.cli import app
from tests.book_lit_fake_llm import respond
from tests.llm_server import FakeLLMServer, Faults, KillSwitch
from tests.streaming.test_streaming import digest

TEXTS = Path(__file__).resolve().parents[2] / "examples" / "texts"
KEY = "sk-test-9f8e7d6c5b4aQWERTYzxcv1234"


def book_qa_args(server: FakeLLMServer, out: Path, *flags: str) -> list[str]:
    return ["build-book-qa", str(TEXTS), "--out", str(out), "--llm-base-url", server.base_url, "--llm-model", "fake",
            "--val-size", "0.2", *flags]


def build(server: FakeLLMServer, out: Path, *flags: str, env: dict | None = None) -> None:
    r = CliRunner().invoke(app, book_qa_args(server, out, *flags), env=env)
    assert r.exit_code == 0, r.output + repr(r.exception)


def digest_without_wall_times(out: Path) -> dict[str, str]:
    """`digest`, also without the per-model wall times of a build with several models."""
    import hashlib
    import re

    found = {k: v for k, v in digest(out).items() if k not in ("manifest.json", "README.md")}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for key in ("timings", "command"):
        manifest.pop(key)
    for usage in manifest["usage"].values():
        usage.pop("wall_time_s", None)
    found["manifest.json"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    card = re.sub(r"'wall_time_s': [0-9.]+", "", (out / "README.md").read_text(encoding="utf-8"))
    card = "\n".join(line for line in card.splitlines() if "- Command:" not in line)
    found["README.md"] = hashlib.sha256(card.encode()).hexdigest()
    return found


# --- the share rule ---------------------------------------------------------------------------------


def test_each_worker_takes_its_share_of_the_limits_and_never_zero():
    s = LLMSettings(model="m", concurrency=16, rpm=90, tpm=10_000)
    assert worker_limits(s, 1) == (16, 90, 10_000)
    assert worker_limits(s, 2) == (8, 45, 5_000)
    assert worker_limits(s, 3) == (5, 30, 10_000 / 3)  # floor for concurrency, exact fractions for rates
    assert worker_limits(LLMSettings(model="m", concurrency=1, rpm=1), 2) == (1, 0.5, None)


def test_the_step_pickles_settings_never_the_key_and_takes_its_share(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    out = Collector()
    step = LLMMapStep("answers", AnswerWork(BookQAConfig()), LLMSettings(model="m", api_key_env="MY_KEY", concurrency=5),
                      tmp_path, out=out)
    worker = step.for_workers(2, remote=False)
    blob = pickle.dumps(worker)
    assert KEY.encode() not in blob and b"MY_KEY" in blob
    again = pickle.loads(blob)
    assert again.workers == 2 and again.cache_path == tmp_path / "llm_cache.sqlite"
    assert not hasattr(again, "_out")  # the driver's collector stays in the driver
    assert (step.max_workers, step.slice_items) == (5, 10)


def test_usage_of_two_workers_adds_up_to_one_workers():
    one = {"requests": 5, "calls_sent": 6, "cache_hits": 1, "prompt_tokens": 100, "completion_tokens": 40, "retries": 1,
           "reasks": 0, "errors": {"429": 1}, "failed_requests": {"invalid_output": 1}, "wall_time_s": 1.5}
    two = dict(one, errors={"500": 2}, failed_requests={}, wall_time_s=0.25)
    counters = usage_counters(one, "json_schema") + usage_counters(two, "json_object")
    usage = usage_from_counters(counters)
    assert usage["requests"] == 10 and usage["calls_sent"] == 12 and usage["prompt_tokens"] == 200
    assert usage["errors"] == {"429": 1, "500": 2} and usage["failed_requests"] == {"invalid_output": 1}
    assert usage["wall_time_s"] == 1.75
    total: dict = {}
    add_usage(total, usage)
    add_usage(total, usage)
    assert total["requests"] == 20 and total["errors"] == {"429": 2, "500": 4}


# --- book-qa on workers -----------------------------------------------------------------------------


def test_book_qa_on_two_workers_equals_one_process_and_stays_within_the_concurrency(tmp_path):
    with FakeLLMServer(responder=respond, latency=0.05) as server:
        build(server, tmp_path / "one", "--executor", "memory", "--concurrency", "4")
        paid = sum(server.served.values())
        server.reset()
        server.peak_in_flight = 0
        build(server, tmp_path / "two", "--workers", "2", "--concurrency", "4")
        assert server.peak_in_flight <= 4  # two engines of 2, not two of 4
        assert sum(server.served.values()) == paid and server.duplicates() == {}
    assert digest(tmp_path / "two") == digest(tmp_path / "one")  # records, order, rejects, manifest usage
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["usage"]["requests"] == paid and manifest["usage"]["calls_sent"] == paid
    assert manifest["llm"]["concurrency"] == 4 and manifest["records_total"] > 0
    assert not any(k.startswith("_llm") or k.startswith("llm.") for k in manifest["counters"])


@pytest.mark.slow  # ~4 s; the fast lane keeps book-qa on two workers within the concurrency
def test_a_concurrency_below_the_worker_count_runs_fewer_workers_on_many_slices(tmp_path):
    with FakeLLMServer(responder=respond, latency=0.02) as server:
        build(server, tmp_path / "one", "--executor", "memory", "--concurrency", "1")
        server.peak_in_flight = 0
        build(server, tmp_path / "two", "--workers", "2", "--concurrency", "1")
        assert server.peak_in_flight == 1
    # slices of 4 items (rejects of a short chunk among them) give the rows of one batch, in order
    assert digest(tmp_path / "two") == digest(tmp_path / "one")


def test_book_qa_steps_cut_into_slices_give_the_rows_of_one_batch(tmp_path):
    """Short chunks (rejected before asking) fall in several slices: rows stay in chunk order."""
    from medmill.builders.book_qa.build import BookQABuilder, BookQAConfig
    from medmill.builders.core.builder import BuildContext
    from medmill.builders.core.steps import LocalExecutor
    from medmill.builders.streaming.executors import ProcessExecutor

    builder, seen = BookQABuilder(), {}
    with FakeLLMServer(responder=respond) as server:
        for name, executor in (("one", LocalExecutor()), ("two", ProcessExecutor(2))):
            cfg = BookQAConfig(inputs=[TEXTS], out=tmp_path / name, qa=BookQAConfig.model_fields["qa"].default_factory().model_copy(update={"min_chunk_chars": 155}),
                               llm=LLMSettings(base_url=server.base_url, model="fake", concurrency=1))
            ctx = BuildContext(cfg.out, own_paths=builder.own_paths(cfg))
            inputs, out = builder.read(cfg, ctx), Collector()
            run = executor.run(inputs.items, builder.generation(cfg, inputs, ctx, out), out.rejects)
            seen[name] = ([r.id for r in run.records], list(out.rejects.lines()), out.usage["requests"], run.counters)
    one, two = seen["one"], seen["two"]
    assert sum('"chunk_too_short"' in line for line in one[1]) == 6 and one[0]
    assert two == one


def test_no_key_in_any_output_file_with_workers(tmp_path):
    with FakeLLMServer(responder=respond, api_key=KEY) as server:
        build(server, tmp_path / "out", "--workers", "2", "--llm-api-key-env", "BOOK_QA_KEY", "--limit-chunks", "6",
              env={"BOOK_QA_KEY": KEY})
        assert server.served  # the workers found the key in their environment
    files = [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert any(f.name == "llm_cache.sqlite" for f in files)
    for f in files:
        assert KEY.encode() not in f.read_bytes(), f


@pytest.mark.slow
@pytest.mark.fresh_plots  # the resumed build runs in a subprocess, which draws its plots: so must the clean one
def test_a_killed_two_worker_build_resumed_pays_no_request_twice(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": "k", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with FakeLLMServer(responder=respond, latency=0.1) as server:
        switch = PatientKillSwitch(server, after=15, rates=Faults(rate_429=0.05, rate_500=0.05, seed=3))
        server.faults = Faults(script=switch)
        cmd = [sys.executable, "-m", "medmill.cli", *book_qa_args(server, out, "--workers", "2", "--concurrency", "4")]
        switch.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        switch.proc.wait(timeout=120)
        assert switch.proc.returncode == -signal.SIGKILL and switch.state == "killed"
        assert not (out / "manifest.json").exists()
        paid_before = sum(server.served.values())
        assert 15 <= paid_before < 42  # killed midway (the full build pays 42)
        stored = len(RequestCache(out / "llm_cache.sqlite"))
        # what the workers received was stored at once; only a call answered in the last instant before
        # the kill can be lost (at most the 4 in flight)
        assert paid_before - 4 <= stored <= paid_before

        switch.state = "resumed"
        server.faults = Faults(rate_429=0.05, rate_500=0.05, seed=4)
        resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        # nothing stored is paid again, across both runs and all workers: only calls lost in the kill are
        repaid = sum(n - 1 for n in server.duplicates().values())
        assert repaid == paid_before - stored
        assert sum(server.served.values()) == 42 + repaid
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["usage"]["cache_hits"] >= paid_before

    with FakeLLMServer(responder=respond) as fresh:  # the uninterrupted one-process run
        build(fresh, tmp_path / "clean", "--executor", "memory", "--concurrency", "4")
    # the same records, order and rejects (the manifests differ in what was paid: retries, cache hits)
    data = {k: v for k, v in digest(out).items() if k not in ("README.md", "manifest.json")}
    assert data == {k: v for k, v in digest(tmp_path / "clean").items() if k not in ("README.md", "manifest.json")}


class PatientKillSwitch(KillSwitch):
    """KillSwitch with a longer grace before the kill: on a busy machine (a whole test suite on two cores)
    the workers may need more than a second to store what they already received."""

    def _kill(self) -> None:
        import time

        time.sleep(2.0)
        super()._kill()


# --- Ray --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_book_qa_on_ray_equals_one_process_and_caches_on_the_drivers_disk(tmp_path):
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with FakeLLMServer(responder=respond, latency=0.05) as server:
        build(server, tmp_path / "one", "--executor", "memory", "--concurrency", "4")
        paid = sum(server.served.values())
        server.reset()
        server.peak_in_flight = 0
        build(server, tmp_path / "ray", "--executor", "ray", "--workers", "2", "--concurrency", "4")
        assert server.peak_in_flight <= 4 and sum(server.served.values()) == paid
        assert digest(tmp_path / "ray") == digest(tmp_path / "one")
        build(server, tmp_path / "ray", "--executor", "ray", "--workers", "2", "--concurrency", "4")
        assert sum(server.served.values()) == paid  # the re-run found every completion in the driver's cache
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["usage"]["cache_hits"] == paid and manifest["usage"]["calls_sent"] == 0


# --- prefs on workers --------------------------------------------------------------------------------


@pytest.mark.slow  # ~4 s; the fast lane keeps book-qa on two workers
def test_prefs_judge_with_pairwise_check_on_two_workers_equals_one_process(tmp_path):
    from tests.prefs.test_build_prefs import GOOD, QUESTIONS, responder
    from tests.prefs.test_prefs_support import write_jsonl

    def reply(body: dict) -> str:
        user = body["messages"][-1]["content"]
        if "【回答A】" in user:  # side by side: position-biased for every third prompt
            a = user.split("【回答A】\n", 1)[1].split("\n\n【回答B】", 1)[0]
            return json.dumps({"better": "A" if a == GOOD or "3" in user else "B", "rationale": "r"}, ensure_ascii=False)
        return responder(body)

    questions = [f"{q}（第{n}位患者）" for n in range(6) for q in QUESTIONS]  # ties, missing scores, in every slice
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"question": q, "answer": f"参考答案：{q}"} for q in questions])
    digests = {}
    with FakeLLMServer(responder=reply) as server:
        url = server.base_url
        for name, run in (("one", ["--executor", "memory"]), ("two", ["--workers", "2"])):
            out = tmp_path / name
            r = CliRunner().invoke(app, ["build-prefs", str(prompts), "--out", str(out), "--strategy", "judge",
                                         "--candidate-model", f"good-model@{url}", "--candidate-model", f"bad-model@{url}",
                                         "--judge-model", f"judge@{url}", "--pairwise-check", "--max-reasks", "0",
                                         "--max-retries", "0", "--concurrency", "2", "--no-dedup", "--val-size", "0", *run])
            assert r.exit_code == 0, r.output + repr(r.exception)
            digests[name] = digest_without_wall_times(out)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["llm"]) == {"candidate:good-model", "candidate:bad-model", "judge", "judge_pairwise"}
    assert manifest["usage"]["judge"]["requests"] == 3 * len(questions)
    reasons = {json.loads(line)["reason"] for line in (tmp_path / "two" / "rejects.jsonl").read_text().splitlines()}
    assert {"tie", "missing_score", "position_inconsistent"} <= reasons
    assert digests["two"] == digests["one"]


def test_a_workers_fatal_llm_error_reaches_the_command_as_its_one_line():
    from medmill.builders.streaming.ray_executor import user_error
    from medmill.schemas.errors import MedmillError

    class RayLikeError(Exception):  # Ray sends a worker's traceback as text, not the exception object
        traceback_str = ('Traceback (most recent call last):\n  File "engine.py", line 180\n'
                         "medmill.schemas.errors.MedmillError: host (model m) rejected the API key (401): check X\n")

    found = user_error(RayLikeError("UDF failed to process a data block."))
    assert isinstance(found, MedmillError) and str(found) == "host (model m) rejected the API key (401): check X"
    try:
        raise RuntimeError("wrapper") from MedmillError("the line")
    except RuntimeError as e:
        assert str(user_error(e)) == "the line"
    other = ValueError("not ours")
    assert user_error(other) is other
