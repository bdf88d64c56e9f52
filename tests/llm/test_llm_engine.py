"""LLMEngine against the local fake server: order, cache, retries, fail-fast, structured output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from medmill.builders.llm.engine import LLMEngine
from medmill.builders.llm.types import LLMRequest, LLMSettings
from medmill.schemas.errors import MedmillError
from tests.llm_server import FakeLLMServer, Faults, Reply


class Answer(BaseModel):
    answer: str = Field(min_length=1)
    score: int


def settings(server: FakeLLMServer, **kw) -> LLMSettings:
    base = dict(base_url=server.base_url, model="fake", retry_base_delay=0.01, retry_max_delay=0.05, timeout=5.0)
    base.update(kw)
    return LLMSettings(**base)


def text_requests(n: int) -> list[LLMRequest]:
    return [LLMRequest(key=f"r{i}", messages=[{"role": "user", "content": f"问题{i}"}]) for i in range(n)]


def json_reply(body: dict) -> str:
    q = body["messages"][0]["content"]
    return json.dumps({"answer": f"答{q}", "score": len(q)}, ensure_ascii=False)


def test_results_in_order_usage_and_cache_replay(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.latency = 0.01
    with LLMEngine(settings(llm_server), tmp_path) as engine:
        results = engine.run(text_requests(30), desc="t")
        assert [r.key for r in results] == [f"r{i}" for i in range(30)]
        assert all(r.ok and r.value == f"回答：问题{i}" and not r.cached for i, r in enumerate(results))
        usage = engine.usage
        assert usage["requests"] == 30 and usage["calls_sent"] == 30 and usage["cache_hits"] == 0
        assert usage["prompt_tokens"] == sum(len(f"问题{i}") for i in range(30))
        assert usage["completion_tokens"] == sum(len(r.value) for r in results)
    assert (tmp_path / "llm_cache.sqlite").is_file()
    served = sum(llm_server.served.values())
    with LLMEngine(settings(llm_server), tmp_path) as engine:  # a re-run: everything from the cache
        again = engine.run(text_requests(30))
        assert [r.value for r in again] == [r.value for r in results]
        assert all(r.cached for r in again)
        assert engine.usage["cache_hits"] == 30 and engine.usage["calls_sent"] == 0
    assert sum(llm_server.served.values()) == served


@pytest.mark.slow  # waits out real 2 s client timeouts: seconds of wall time, and sensitive to machine load
def test_every_transient_fault_is_retried_and_nothing_is_paid_twice(tmp_path: Path) -> None:
    kinds = ["429", "500", "drop", "invalid_json", "truncated", "timeout"]

    def script(body: dict, seen: int) -> str | None:
        """Request i fails first with kind i % 6, every third one a second time with the next kind."""
        i = int(body["messages"][0]["content"].removeprefix("问题"))
        plan = [kinds[i % 6]] + ([kinds[(i + 1) % 6]] if i % 3 == 0 else [])
        return plan[seen] if seen < len(plan) else None

    # the client timeout stays far above a normal answer's time even on a loaded machine
    with FakeLLMServer(faults=Faults(script=script), hang=3.0) as server:
        with LLMEngine(settings(server, timeout=2.0, concurrency=32), tmp_path) as engine:
            results = engine.run(text_requests(60))
            usage = engine.usage
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert [r.attempts for r in results[:4]] == [3, 2, 2, 3]
    assert {f.fault for f in server.log} == set(kinds) | {None}
    assert set(usage["errors"]) >= {"rate_limited", "server_error", "connection", "bad_response", "timeout"}
    assert usage["retries"] == sum(1 for f in server.log if f.fault) == sum(usage["errors"].values())
    assert server.duplicates() == {}
    assert sum(server.served.values()) == 60


def test_concurrency_is_bounded(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.latency = 0.1
    with LLMEngine(settings(llm_server, concurrency=4), tmp_path) as engine:
        assert all(r.ok for r in engine.run(text_requests(16)))
    assert 2 <= llm_server.peak_in_flight <= 4


def test_a_shared_cache_serves_another_build(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    shared = tmp_path / "shared.sqlite"
    with LLMEngine(settings(llm_server, cache=shared), tmp_path / "build1") as engine:
        engine.run(text_requests(5))
    with LLMEngine(settings(llm_server, cache=shared), tmp_path / "build2") as engine:
        assert all(r.cached for r in engine.run(text_requests(5))) and engine.usage["calls_sent"] == 0
    assert len(llm_server.log) == 5 and not (tmp_path / "build2" / "llm_cache.sqlite").exists()


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    with FakeLLMServer(faults=Faults(script=lambda body, seen: "429" if seen == 0 else None), retry_after=0.4) as server:
        with LLMEngine(settings(server), tmp_path) as engine:
            t0 = time.perf_counter()
            [result] = engine.run(text_requests(1))
            elapsed = time.perf_counter() - t0
    assert result.ok and result.attempts == 2
    assert elapsed >= 0.4  # waited what the server asked, not the 0.01 s backoff


def test_exhausted_retries_become_failed_results_and_are_retried_on_rerun(tmp_path: Path) -> None:
    outage = {"问题3"}  # this request keeps failing with 500 while the outage lasts

    def script(body: dict, seen: int) -> str | None:
        return "500" if body["messages"][0]["content"] in outage else None

    with FakeLLMServer(faults=Faults(script=script)) as server:
        with LLMEngine(settings(server, max_retries=2), tmp_path) as engine:
            results = engine.run(text_requests(6))
            assert [r.ok for r in results] == [True, True, True, False, True, True]
            bad = results[3]
            assert bad.error == "retries_exhausted" and "server_error" in bad.message and bad.value is None
            assert bad.attempts == 3 and engine.usage["failed_requests"] == {"retries_exhausted": 1}
        outage.clear()  # the outage is over: a re-run sends only the failed request
        before = sum(server.served.values())
        with LLMEngine(settings(server), tmp_path) as engine:
            again = engine.run(text_requests(6))
            assert all(r.ok for r in again) and engine.usage["calls_sent"] == 1
        assert sum(server.served.values()) == before + 1


def test_a_prompt_too_long_fails_that_request_only(tmp_path: Path) -> None:
    with FakeLLMServer(faults=Faults(script=lambda body, seen: "too_long" if "问题2" in str(body) else None)) as server:
        with LLMEngine(settings(server), tmp_path) as engine:
            results = engine.run(text_requests(4))
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].error == "context_too_long" and "maximum context length" in results[2].message
    assert len(server.log) == 4  # not retried


def test_401_fails_fast_without_leaking_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    with FakeLLMServer(api_key="the-right-key") as server:
        with LLMEngine(settings(server, api_key_env="MY_LLM_KEY"), tmp_path) as engine:
            with pytest.raises(MedmillError) as err:
                engine.run(text_requests(50))
            assert len(server.log) <= settings(server).concurrency  # stopped at once, no retries
            assert secret not in json.dumps(engine.describe()) + json.dumps(engine.usage)
        assert server.log[0].headers["authorization"] == f"Bearer {secret}"  # the key was sent...
    message = str(err.value)
    assert "401" in message and "MY_LLM_KEY" in message and "\n" not in message
    assert secret not in message  # ...but never shown
    assert secret.encode() not in (tmp_path / "llm_cache.sqlite").read_bytes()


def test_an_unreachable_server_is_a_clear_error_not_a_dataset_of_rejects(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, retry_base_delay=0.01)
    with LLMEngine(s, tmp_path) as engine, pytest.raises(MedmillError, match=f"cannot connect to 127.0.0.1:{port}"):
        engine.run(text_requests(3))


@pytest.mark.parametrize("url", ["127.0.0.1:8000/v1", "localhost:8000/v1", "ftp://example.org/v1"])
def test_a_base_url_without_http_scheme_is_a_clear_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(MedmillError, match="must be an http:// or https:// URL"):
        LLMEngine(LLMSettings(base_url=url, model="m", max_retries=0), tmp_path)


def test_an_unusable_cache_path_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "not_a_db.sqlite").write_text("garbage")
    s = LLMSettings(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(MedmillError, match="cannot create the LLM cache"):
        LLMEngine(s, tmp_path / "a_file" / "out")  # --out below a file: the default cache cannot be made
    with pytest.raises(MedmillError, match="cannot open the LLM cache"):
        LLMEngine(s.model_copy(update={"cache": tmp_path / "not_a_db.sqlite"}), tmp_path)
    with pytest.raises(MedmillError, match="cannot open the LLM cache"):
        LLMEngine(s.model_copy(update={"cache": tmp_path}), tmp_path)  # --cache DIR


def test_404_unknown_route_fails_fast(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        s = settings(server, base_url=server.base_url.replace("/v1", "/nope"))
        with LLMEngine(s, tmp_path) as engine, pytest.raises(MedmillError, match="404"):
            engine.run(text_requests(5))


def test_json_schema_is_requested_and_validated(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.responder = json_reply
    reqs = [LLMRequest(key="a", messages=[{"role": "user", "content": "问题"}], schema=Answer,
                       prompt={"id": "p", "version": "1"})]
    with LLMEngine(settings(llm_server), tmp_path) as engine:
        [result] = engine.run(reqs)
        assert engine.describe()["structured_output"] == "json_schema"
    assert result.ok and result.value == Answer(answer="答问题", score=2)
    fmt = llm_server.bodies()[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Answer"
    assert set(fmt["json_schema"]["schema"]["required"]) == {"answer", "score"}


def test_steps_down_to_json_object_when_json_schema_is_refused(tmp_path: Path) -> None:
    with FakeLLMServer(responder=json_reply, json_schema=False) as server:
        reqs = [LLMRequest(key=str(i), messages=[{"role": "user", "content": f"问{i}"}], schema=Answer) for i in range(5)]
        with LLMEngine(settings(server), tmp_path) as engine:
            results = engine.run(reqs)
            assert engine.describe()["structured_output"] == "json_object"
    assert all(r.ok for r in results)
    answered = [b for b in server.bodies() if b["response_format"]["type"] == "json_object"]
    assert len(answered) == 5 and all("JSON Schema" in b["messages"][-1]["content"] for b in answered)


def test_a_forced_format_the_server_refuses_is_a_clear_error(tmp_path: Path) -> None:
    with FakeLLMServer(responder=json_reply, json_schema=False) as server:
        reqs = [LLMRequest(key="a", messages=[{"role": "user", "content": "问"}], schema=Answer)]
        with LLMEngine(settings(server, structured="json_schema"), tmp_path) as engine:
            with pytest.raises(MedmillError, match="does not support --structured-output json_schema"):
                engine.run(reqs)


@pytest.mark.parametrize("reply", [
    # a reasoning model's thoughts (vLLM/Ollama serve them inside the content) hold JSON-looking text
    '<think>用户要求输出 {"answer": …}，先列要点 [1] 病因 [2] 治疗。</think>\n{"answer": "答", "score": 3}',
    '<THINK>\n{"score": "x"}\n</THINK>\n```json\n{"answer": "答", "score": 3}\n```',
    # prose with a bracketed note before the real answer
    '参考[1]与{}之后，结果如下：{"answer": "答", "score": 3}',
])
def test_json_before_the_answer_does_not_hide_it(reply: str) -> None:
    from medmill.builders.llm import structured

    assert structured.parse(reply, Answer) == Answer(answer="答", score=3)


def test_a_reply_whose_only_json_is_wrong_still_says_why() -> None:
    from medmill.builders.llm import structured

    with pytest.raises(ValueError, match="does not match the schema: score"):
        structured.parse('说明 {"answer": "答"} 完毕', Answer)
    with pytest.raises(ValueError, match="no JSON object"):
        structured.parse('<think>{"answer": "答", "score": 3}</think>抱歉', Answer)


def test_invalid_output_is_reasked_with_the_error_then_rejected_with_raw(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    def responder(body: dict) -> str:
        q = body["messages"][0]["content"]
        if q == "坏":
            return "抱歉，我无法回答。"
        if len(body["messages"]) == 1:  # first answer: prose around JSON of the wrong shape
            return '好的：\n```json\n{"answer": "x"}\n```'
        return json_reply(body)

    llm_server.responder = responder
    reqs = [LLMRequest(key=q, messages=[{"role": "user", "content": q}], schema=Answer) for q in ("好", "坏")]
    with LLMEngine(settings(llm_server, max_reasks=2), tmp_path) as engine:
        good, bad = engine.run(reqs)
        assert engine.usage["reasks"] == 1 + 2
    assert good.ok and good.value.answer == "答好" and good.attempts == 2
    reask = next(b for b in llm_server.bodies() if b["messages"][0]["content"] == "好" and len(b["messages"]) == 3)
    assert reask["messages"][1] == {"role": "assistant", "content": '好的：\n```json\n{"answer": "x"}\n```'}
    assert "score" in reask["messages"][2]["content"]  # the validation error is in the re-ask
    assert not bad.ok and bad.error == "invalid_output" and bad.raw == "抱歉，我无法回答。" and bad.value is None
    assert bad.attempts == 3


def test_empty_text_is_an_error_not_an_answer(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.responder = lambda body: Reply("   ")
    with LLMEngine(settings(llm_server), tmp_path) as engine:
        [result] = engine.run(text_requests(1))
    assert not result.ok and result.error == "empty_output" and result.value is None


def test_identical_requests_in_flight_are_sent_once(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.latency = 0.05
    reqs = [LLMRequest(key=str(i), messages=[{"role": "user", "content": "同一个问题"}]) for i in range(10)]
    reqs.append(LLMRequest(key="s", messages=[{"role": "user", "content": "同一个问题"}], params={"sample": 1}))
    with LLMEngine(settings(llm_server), tmp_path) as engine:
        results = engine.run(reqs)
    assert all(r.ok for r in results)
    assert len(llm_server.log) == 2  # ten identical requests share one call; "sample" makes a new one
    assert all("sample" not in b for b in llm_server.bodies())


def test_generation_params_and_extra_body_are_sent(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    s = settings(llm_server, temperature=0.2, top_p=0.9, max_tokens=77, seed=5, extra_body={"enable_thinking": False})
    reqs = [LLMRequest(key="a", messages=[{"role": "user", "content": "q"}], params={"temperature": 0.0, "top_k": 4})]
    with LLMEngine(s, tmp_path) as engine:
        engine.run(reqs)
        info = engine.describe()
    body = llm_server.bodies()[0]
    assert body["model"] == "fake" and body["temperature"] == 0.0 and body["top_p"] == 0.9
    assert body["max_tokens"] == 77 and body["seed"] == 5
    assert body["enable_thinking"] is False and body["top_k"] == 4
    assert info["base_url_host"] == f"127.0.0.1:{llm_server.port}" and info["model"] == "fake"


def test_rpm_limit_spaces_requests(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    with LLMEngine(settings(llm_server, rpm=600), tmp_path) as engine:  # one request per 0.1 s
        t0 = time.perf_counter()
        engine.run(text_requests(5))
        elapsed = time.perf_counter() - t0
    assert elapsed >= 0.4 * 0.95


def test_tpm_bucket_waits_and_is_corrected_by_real_usage() -> None:
    import asyncio

    from medmill.builders.llm.limits import RateLimiter

    async def scenario() -> float:
        limiter = RateLimiter(tpm=600)  # 10 tokens per second, a full bucket to start
        await limiter.acquire(600)  # empties it
        t0 = time.perf_counter()
        limiter.settle(600, 300)  # the call used half its estimate: 300 tokens come back
        await limiter.acquire(300)  # fits at once
        await limiter.acquire(5)  # empty again: 5 tokens take 0.5 s to refill
        return time.perf_counter() - t0

    assert 0.49 <= asyncio.run(scenario()) < 5  # without the correction the 300 would wait 30 s


def test_runs_inside_a_running_event_loop(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    import asyncio

    async def notebook_cell() -> list:
        with LLMEngine(settings(llm_server), tmp_path) as engine:
            return engine.run(text_requests(3))

    assert [r.ok for r in asyncio.run(notebook_cell())] == [True, True, True]
