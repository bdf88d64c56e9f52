"""A local OpenAI-compatible chat-completions server for tests and benches, with fault injection.

In a test (tests/ is a package; the `llm_server` fixture in conftest.py gives a started server)::

    from tests.llm_server import FakeLLMServer, Faults

    def reply(body: dict) -> str:                  # the request JSON -> the assistant's text
        return '{"pairs": []}' if body.get("response_format") else "你好"

    with FakeLLMServer(responder=reply, latency=0.01, faults=Faults(rate_429=0.1, seed=1)) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="fake", retry_base_delay=0.01)
        ...
        srv.log                  # every request received: LoggedRequest(path, headers, body, fault)
        srv.served               # Counter: content hash -> completions actually answered ("paid")
        srv.peak_in_flight       # the most requests handled at once
        srv.duplicates()         # hashes answered more than once (should be empty)

or with the fixture: `def test_x(llm_server): llm_server.responder = reply; llm_server.base_url ...`.

From a shell (a subprocess server for benches or kill -9 tests; prints `PORT <n>` then serves)::

    python tests/llm_server.py --latency 0.2 --rate-429 0.1 --rate-500 0.05 --rate-invalid-json 0.05

Faults (each request draws one, by the given rates, from a seeded RNG; or pass `script`, a callable
`(body, n_received_for_this_hash) -> kind | None`, for an exact plan):
  "429"           status 429 with `Retry-After: <retry_after>` (fractional seconds, honoured by clients)
  "500"           status 500
  "timeout"       holds the connection for `hang` seconds, then closes it without an answer
  "drop"          closes the connection without an answer
  "invalid_json"  status 200 with a body that is not JSON
  "truncated"     status 200 with a JSON body cut in half
  "too_long"      status 400 "maximum context length exceeded" (a per-request error, not a fatal one)
Only answered (200, well-formed) completions count in `served`. `api_key` set -> other keys get 401.
`json_schema=False` makes the server answer 400 to `response_format: json_schema` like older servers.
The responder may return a `Reply` for a finish_reason or token counts of its own choosing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("429", "500", "timeout", "drop", "invalid_json", "truncated", "too_long")


@dataclass
class Reply:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Faults:
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_invalid_json: float = 0.0
    rate_truncated: float = 0.0
    rate_too_long: float = 0.0
    seed: int = 0
    script: Callable[[dict[str, Any], int], str | None] | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self, body: dict[str, Any], seen: int) -> str | None:
        if self.script is not None:
            return self.script(body, seen)
        rates = [self.rate_429, self.rate_500, self.rate_timeout, self.rate_drop, self.rate_invalid_json,
                 self.rate_truncated, self.rate_too_long]
        with self._lock:
            x = self._rng.random()
        for kind, rate in zip(FAULT_KINDS, rates, strict=True):
            if x < rate:
                return kind
            x -= rate
        return None


@dataclass
class LoggedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    fault: str | None = None
    status: int = 200


def content_hash(body: dict[str, Any]) -> str:
    """What makes two requests 'the same paid request': the whole body, canonicalised."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def echo_responder(body: dict[str, Any]) -> str:
    """Default: repeat the last user message (deterministic, so datasets compare equal across runs)."""
    last = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return "回答：" + (last[-1]["content"] if last else "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default 5 resets bursts of connections from a concurrent client
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, cancelled runs) are expected here; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeLLMServer:
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str | Reply] = echo_responder,
        latency: float = 0.0,
        faults: Faults | None = None,
        api_key: str | None = None,
        retry_after: float = 0.05,
        hang: float = 5.0,
        json_schema: bool = True,
    ) -> None:
        self.responder = responder
        self.latency = latency
        self.faults = faults or Faults()
        self.api_key = api_key
        self.retry_after = retry_after
        self.hang = hang
        self.json_schema = json_schema
        self.log: list[LoggedRequest] = []
        self.served: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0  # the most chat requests handled at once (checks client concurrency)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- assertions helpers -----------------------------------------------------------------------

    def duplicates(self) -> dict[str, int]:
        with self._lock:
            return {h: n for h, n in self.served.items() if n > 1}

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.log if r.body is not None]

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.served.clear()
            self.received.clear()

    # --- request handling (called from handler threads) -------------------------------------------

    def _record(self, entry: LoggedRequest, body_hash: str | None) -> int:
        with self._lock:
            self.log.append(entry)
            if body_hash is None:
                return 0
            seen = self.received[body_hash]
            self.received[body_hash] += 1
            return seen

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)


def _handler_for(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers
        disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            with server._lock:
                server.in_flight += 1
                server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
            try:
                self._chat()
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _chat(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                server._record(LoggedRequest(self.path, headers, None, status=400), None)
                self._json(400, {"error": {"message": "request body is not JSON"}})
                return
            h = content_hash(body)
            entry = LoggedRequest(self.path, headers, body)
            seen = server._record(entry, h)
            if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
                entry.status = 404
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if server.api_key is not None and headers.get("authorization") != f"Bearer {server.api_key}":
                entry.status = 401
                self._json(401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}})
                return
            fmt = (body.get("response_format") or {}).get("type")
            if fmt == "json_schema" and not server.json_schema:
                entry.status = 400
                self._json(400, {"error": {"message": "response_format type json_schema is not supported"}})
                return
            if server.latency:
                server._sleep(server.latency)
            fault = server.faults.draw(body, seen)
            entry.fault = fault
            if fault is not None:
                self._fault(fault, entry)
                return
            out = server.responder(body)
            reply = out if isinstance(out, Reply) else Reply(str(out))
            prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
            payload = {
                "id": f"chatcmpl-{h}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens if reply.prompt_tokens is not None else prompt_chars,
                    "completion_tokens": reply.completion_tokens if reply.completion_tokens is not None else len(reply.text),
                    "total_tokens": 0,
                },
            }
            payload["usage"]["total_tokens"] = payload["usage"]["prompt_tokens"] + payload["usage"]["completion_tokens"]
            if self._json(200, payload):
                with server._lock:
                    server.served[h] += 1

        def _fault(self, kind: str, entry: LoggedRequest) -> None:
            if kind == "429":
                entry.status = 429
                self._json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                           {"Retry-After": f"{server.retry_after:g}"})
            elif kind == "500":
                entry.status = 500
                self._json(500, {"error": {"message": "internal error"}})
            elif kind in ("timeout", "drop"):
                entry.status = 0
                if kind == "timeout":
                    server._sleep(server.hang)
                self.close_connection = True
                self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees a dropped connection
            elif kind == "invalid_json":
                self._bytes(200, b"<html>upstream error</html> not json", "application/json")
            elif kind == "too_long":
                entry.status = 400
                self._json(400, {"error": {"message": "This model's maximum context length is 8192 tokens.",
                                           "code": "context_length_exceeded"}})
            else:  # truncated
                self._bytes(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess',
                            "application/json")

        def _json(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> bool:
            return self._bytes(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json", extra)

        def _bytes(self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None) -> bool:
            """Send a response; False when the client has gone (it was not delivered)."""
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return False
            return True

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description="Fake OpenAI-compatible server (echo responder).")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    for kind in FAULT_KINDS:
        ap.add_argument(f"--rate-{kind.replace('_', '-')}", type=float, default=0.0)
    args = ap.parse_args()
    faults = Faults(
        rate_429=args.rate_429, rate_500=args.rate_500, rate_timeout=args.rate_timeout, rate_drop=args.rate_drop,
        rate_invalid_json=args.rate_invalid_json, rate_truncated=args.rate_truncated, rate_too_long=args.rate_too_long,
        seed=args.seed,
    )
    with FakeLLMServer(latency=args.latency, faults=faults) as srv:
        print(f"PORT {srv.port}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


class KillSwitch:
    """Fault script for kill -9 tests: `rates` faults until `after` requests were answered; from then on
    every request is dropped unanswered (nothing more is "paid"), and after a moment (so the client can
    store what it already received, even on a loaded machine) the build process `proc` gets SIGKILL."""

    def __init__(self, server: FakeLLMServer, after: int, rates: Faults) -> None:
        self.server, self.after, self.rates = server, after, rates
        self.proc: subprocess.Popen | None = None
        self.state = "running"
        self.lock = threading.Lock()

    def __call__(self, body: dict, seen: int) -> str | None:
        with self.lock:
            if self.state == "running" and self.proc is not None and sum(self.server.served.values()) >= self.after:
                self.state = "dying"
                threading.Thread(target=self._kill, daemon=True).start()
            if self.state != "running":
                return "drop"
        return self.rates.draw(body, seen)

    def _kill(self) -> None:
        time.sleep(1.0)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.state = "killed"


if __name__ == "__main__":
    main()
