"""The LLM engine every LLM-powered builder runs on.

Usage (builders)::

    from medmill.builders.llm.engine import LLMEngine
    from medmill.builders.llm.types import LLMRequest

    with LLMEngine(settings, out_dir) as engine:           # cache: <out_dir>/llm_cache.sqlite
        results = engine.run([LLMRequest(key=..., messages=[...], schema=MyModel,
                                         prompt=template.ref)], desc="book QA")
        for r in results:                                   # same order as the requests
            if r.ok: use(r.value)                           # MyModel instance (or str without schema)
            else: reject(r.error, r.message, raw=r.raw)     # "retries_exhausted", "invalid_output", ...
    info.llm, info.usage = engine.describe(), engine.usage  # manifest `llm` and `usage`

What it guarantees:
- Bounded concurrency (`settings.concurrency`) on one asyncio loop, optional rpm/tpm limits.
- Retries with exponential backoff and full jitter on 429 (honouring Retry-After), 5xx, timeouts,
  dropped connections and unreadable responses; after `max_retries` the request becomes
  `ok=False, error="retries_exhausted"` and the run goes on.
- 400/401/403/404 stop the run at once with a one-line `MedmillError` (401 names the env var to
  check); the key never appears in messages, manifests or the cache.
- Structured output: with `LLMRequest.schema` the engine asks for `json_schema`, steps down to
  `json_object` and then to prompt instructions when the server rejects a format, extracts JSON
  tolerantly, validates it, re-asks up to `max_reasks` times with the validation error, then gives
  `ok=False, error="invalid_output"` with the raw reply. Nothing is ever coerced to an empty answer.
- Every completion is stored in a sqlite cache the moment it arrives; its key hashes backend,
  model, messages, generation params, response format/schema and prompt id/version. A re-run (or
  a run resumed after kill -9) replays finished calls from the cache and sends only the rest, so
  it ends with the same results. Identical calls in flight at once are sent once.
- Distinct samples of one prompt: give each request a different `params["seed"]`, or a
  `params["sample"]` index (part of the cache key, never sent).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medmill.builders.core.progress import Progress, no_progress
from medmill.schemas.errors import MedmillError

from . import structured
from .cache import CacheLike, Completion, RequestCache, call_key
from .errors import CallError, FatalCallError, FormatUnsupported, RequestRejected
from .limits import RateLimiter
from .types import LLMRequest, LLMResult, LLMSettings

log = logging.getLogger(__name__)

_GEN_PARAMS = ("temperature", "top_p", "max_tokens", "seed")


class _Failed(Exception):
    """A call that will not succeed in this run (retry budget spent, or refused by the server)."""

    def __init__(self, error: str, message: str, sent: int) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.sent = sent


class LLMEngine:
    """Runs lists of `LLMRequest`s against one backend; see the module docstring."""

    def __init__(self, settings: LLMSettings, out_dir: Path, progress: Progress = no_progress, *,
                 cache: CacheLike | None = None, share: int = 1) -> None:
        """`cache`: where completions are kept (default: the sqlite file `cache_path(settings, out_dir)`);
        `share`: how many engines run at once on these settings (workers of one build): this one takes
        its share of the limits, see `worker_limits`."""
        self.settings = settings
        self.progress = progress
        try:
            self.backend = _make_backend(settings)
        except FatalCallError as e:
            raise MedmillError(str(e)) from None
        self.cache: CacheLike = cache if cache is not None else RequestCache(cache_path(settings, Path(out_dir)))
        self._modes: list[structured.Mode] = structured_modes(settings, self.backend.modes)
        self._concurrency, rpm, tpm = worker_limits(settings, share)
        self._limiter_settings = (rpm, tpm)
        self._counts: Counter = Counter()
        self._errors: Counter = Counter()
        self._failed: Counter = Counter()
        self._wall = 0.0

    # --- public API -------------------------------------------------------------------------------

    def run(self, requests: list[LLMRequest], desc: str = "") -> list[LLMResult]:
        """One result per request, in order. Raises MedmillError on a fatal error (bad key, URL, model)."""
        if not requests:
            return []
        t0 = time.perf_counter()
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._run(requests, desc))
            # Called from inside an event loop (a notebook): run on a private loop in a thread.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, self._run(requests, desc)).result()
        finally:
            self._wall += time.perf_counter() - t0

    @property
    def usage(self) -> dict[str, Any]:
        """Accounting for the manifest: paid tokens, calls, retries, errors by kind, cache hits."""
        return {
            "requests": self._counts["requests"],
            "calls_sent": self._counts["calls"],
            "cache_hits": self._counts["cache_hits"],
            "prompt_tokens": self._counts["prompt_tokens"],
            "completion_tokens": self._counts["completion_tokens"],
            "retries": self._counts["retries"],
            "reasks": self._counts["reasks"],
            "errors": dict(sorted(self._errors.items())),
            "failed_requests": dict(sorted(self._failed.items())),
            "wall_time_s": round(self._wall, 3),
        }

    def describe(self) -> dict[str, Any]:
        """What generated the data, for the manifest's `llm` entry (never the key)."""
        return describe_llm(self.settings, self._modes[0])

    @property
    def structured_mode(self) -> structured.Mode:
        """The response format in use now (after any step down the server forced)."""
        return self._modes[0]

    def close(self) -> None:
        self.cache.close()
        self.backend.unload()

    def __enter__(self) -> LLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self, requests: list[LLMRequest], desc: str) -> list[LLMResult]:
        self._limiter = RateLimiter(*self._limiter_settings)
        self._inflight: dict[str, asyncio.Future[Completion | None]] = {}
        self._fatal: str | None = None
        try:
            await self.backend.start()
        except FatalCallError as e:
            raise MedmillError(str(e)) from None
        results: list[LLMResult | None] = [None] * len(requests)
        order = iter(range(len(requests)))  # shared by the workers: each takes the next request
        # a local model batches what is queued at once, so keep at least a batch in flight
        width = max(1, self._concurrency, self.settings.batch_size if self.settings.backend == "transformers" else 1)
        try:
            with self.progress(desc or "LLM", len(requests)) as advance:

                async def worker() -> None:
                    for i in order:
                        results[i] = await self._one(requests[i])
                        advance(1, self._status())

                # a fixed pool of workers, not one task per request: memory and scheduling stay flat
                # for 100k requests
                workers = [asyncio.ensure_future(worker()) for _ in range(min(width, len(requests)))]
                try:
                    await asyncio.gather(*workers)
                finally:
                    for w in workers:
                        w.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
        except FatalCallError as e:
            raise MedmillError(self.backend.scrub(str(e))) from None
        finally:
            await self.backend.close()
        return [r for r in results if r is not None]

    def _status(self) -> str:
        c = self._counts
        errors = sum(self._errors.values())
        return (
            f"tok {c['prompt_tokens']:,}+{c['completion_tokens']:,} · calls {c['calls']} · "
            f"cached {c['cache_hits']} · retries {c['retries']} · errors {errors}"
        )

    async def _one(self, req: LLMRequest) -> LLMResult:
        self._counts["requests"] += 1
        result = await self._answer(req)
        if not result.ok:
            self._failed[result.error or "?"] += 1
        return result

    async def _answer(self, req: LLMRequest) -> LLMResult:
        conversation = [dict(m) for m in req.messages]
        usage: Counter = Counter()
        all_cached = True
        raw: str | None = None
        attempts = 0
        finish: str | None = None
        for ask in range(self.settings.max_reasks + 1):
            try:
                completion, cached, calls = await self._call(req, conversation)
            except _Failed as f:
                return LLMResult(req.key, False, raw=raw, error=f.error, message=f.message, attempts=attempts + f.sent,
                                 usage=dict(usage), finish_reason=finish)
            attempts += calls
            all_cached &= cached
            usage["prompt_tokens"] += completion.prompt_tokens
            usage["completion_tokens"] += completion.completion_tokens
            raw, finish = completion.text, completion.finish_reason
            if req.schema is None:
                if not raw.strip():
                    return LLMResult(req.key, False, raw=raw, error="empty_output", message="the model returned no text",
                                     cached=all_cached, attempts=attempts, usage=dict(usage), finish_reason=finish)
                return LLMResult(req.key, True, value=raw, raw=raw, cached=all_cached, attempts=attempts,
                                 usage=dict(usage), finish_reason=finish)
            try:
                value = structured.parse(raw, req.schema)
            except ValueError as e:
                problem = str(e)
                if finish == "length":
                    problem += " (the reply was cut at max_tokens)"
                if ask < self.settings.max_reasks:
                    self._counts["reasks"] += 1
                    conversation = conversation + [{"role": "assistant", "content": raw},
                                                   structured.reask_message(problem, req.schema)]
                    continue
                return LLMResult(req.key, False, raw=raw, error="invalid_output",
                                 message=f"invalid after {ask + 1} answer(s): {problem}"[:400], cached=all_cached,
                                 attempts=attempts, usage=dict(usage), finish_reason=finish)
            return LLMResult(req.key, True, value=value, raw=raw, cached=all_cached, attempts=attempts,
                             usage=dict(usage), finish_reason=finish)
        raise AssertionError("unreachable: the re-ask loop always returns")

    def _payload(self, req: LLMRequest, conversation: list[dict[str, str]]) -> dict[str, Any]:
        """Everything one call sends, plus what else distinguishes it in the cache."""
        s = self.settings
        params = {k: req.params.get(k, getattr(s, k)) for k in _GEN_PARAMS}
        extra = dict(s.extra_body)
        extra.update({k: v for k, v in req.params.items() if k not in _GEN_PARAMS and k != "sample"})
        mode = self._modes[0]
        messages = conversation
        fmt = None
        if req.schema is not None:
            fmt = structured.response_format(req.schema, mode)
            if mode != "json_schema":
                messages = structured.with_instruction(conversation, req.schema)
        return {
            "backend": s.backend,
            "model": s.model,
            "messages": messages,
            "params": params,
            "extra_body": extra,
            "response_format": fmt,
            "schema": _schema_id(req.schema),
            "prompt": dict(req.prompt),
            "sample": req.params.get("sample"),
        }

    async def _call(self, req: LLMRequest, conversation: list[dict[str, str]]) -> tuple[Completion, bool, int]:
        """One completion for `conversation`: from the cache, from an identical call in flight, or sent
        with retries. Returns (completion, came_from_cache, calls_sent)."""
        sent = 0
        retry = 0
        while True:
            mode = self._modes[0]
            payload = self._payload(req, conversation)
            key = call_key(payload)
            hit = self.cache.get(key)
            if hit is not None:
                self._counts["cache_hits"] += 1
                return hit, True, sent
            if key in self._inflight:
                shared = await asyncio.shield(self._inflight[key])
                if shared is None:  # that call failed: go round again (retry it ourselves)
                    continue
                return shared, True, sent
            if self._fatal is not None:  # another request hit a fatal error: send nothing more
                raise FatalCallError(self._fatal)
            future: asyncio.Future[Completion | None] = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            try:
                estimate = _estimate_tokens(payload)
                await self._limiter.acquire(estimate)
                sent += 1
                self._counts["calls"] += 1
                completion = await self.backend.complete(
                    payload["messages"], payload["params"], payload["response_format"], payload["extra_body"]
                )
            except FormatUnsupported as e:
                _drop(self._inflight, key, future)
                self._step_down(mode, str(e))
                continue
            except CallError as e:
                _drop(self._inflight, key, future)
                self._errors[e.kind] += 1
                if retry >= self.settings.max_retries:
                    if e.kind == "connection" and not self._counts["answered"]:
                        # nothing has ever answered: a wrong URL or a server that is down, not bad luck
                        raise self._stop_all(
                            f"cannot connect to {self.backend.host}: check --llm-base-url (is the server running?)"
                        ) from None
                    raise _Failed("retries_exhausted", f"{e.kind} after {retry + 1} attempts: {e}", sent) from None
                delay = self._backoff(retry, e.retry_after)
                retry += 1
                self._counts["retries"] += 1
                log.debug("retrying %s in %.2fs after %s", req.key, delay, e.kind)
                await asyncio.sleep(delay)
                continue
            except RequestRejected as e:
                _drop(self._inflight, key, future)
                self._errors[e.kind] += 1
                raise _Failed(e.kind, self.backend.scrub(str(e)), sent) from None
            except FatalCallError as e:
                _drop(self._inflight, key, future)
                raise self._stop_all(str(e)) from None
            except BaseException:
                _drop(self._inflight, key, future)
                raise
            self._limiter.settle(estimate, completion.prompt_tokens + completion.completion_tokens)
            self._counts["answered"] += 1
            self._counts["prompt_tokens"] += completion.prompt_tokens
            self._counts["completion_tokens"] += completion.completion_tokens
            self.cache.put(key, completion)
            future.set_result(completion)
            del self._inflight[key]
            return completion, False, sent

    def _step_down(self, refused: structured.Mode, why: str) -> None:
        if self._modes[0] != refused:  # a concurrent request already stepped down
            return
        if len(self._modes) > 1:
            old = self._modes.pop(0)
            log.warning("the server rejected response_format %s (%s); using %s", old, why[:120], self._modes[0])
        else:  # only possible when the user forced one mode
            raise self._stop_all(f"the server does not support --structured-output {self._modes[0]}: {why}")

    def _stop_all(self, message: str) -> FatalCallError:
        """A fatal error: remember it so no other request sends anything more, and return it to raise."""
        self._fatal = message
        return FatalCallError(message)

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 600.0)
        cap = min(self.settings.retry_max_delay, self.settings.retry_base_delay * 2**retry)
        return random.uniform(0, cap)


def _drop(inflight: dict[str, asyncio.Future], key: str, future: asyncio.Future) -> None:
    """Release waiters on a call that did not complete (None): each goes round and retries itself."""
    inflight.pop(key, None)
    if not future.done():
        future.set_result(None)


def _schema_id(schema: type[BaseModel] | None) -> Any:
    return None if schema is None else {"name": schema.__name__, "json": structured.plain_schema(schema)}


def _estimate_tokens(payload: dict[str, Any]) -> int:
    """Rough size for the tpm limiter (about one token per CJK char, four ASCII chars per token)."""
    chars = sum(len(m.get("content") or "") for m in payload["messages"])
    return chars + int(payload["params"].get("max_tokens") or 0)


def _make_backend(settings: LLMSettings) -> Any:
    if settings.backend == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    from .transformers_backend import TransformersBackend

    return TransformersBackend(settings)


def cache_path(settings: LLMSettings, out_dir: Path) -> Path:
    """The request cache of a build: `settings.cache`, else llm_cache.sqlite in the out dir."""
    return Path(settings.cache) if settings.cache else Path(out_dir) / "llm_cache.sqlite"


def structured_modes(settings: LLMSettings, available: tuple[str, ...]) -> list[structured.Mode]:
    """The response formats to try, best first (only the one asked for when not "auto")."""
    modes = [m for m in structured.MODES if m in available]
    if settings.structured != "auto":
        if settings.structured not in modes:
            raise MedmillError(
                f"--structured-output {settings.structured} is not available with the {settings.backend} backend"
            )
        modes = [settings.structured]
    return modes


def worker_limits(settings: LLMSettings, share: int) -> tuple[int, float | None, float | None]:
    """One engine's share when `share` engines run on the same settings at once (a build's workers):
    concurrency floor(concurrency / share) but at least 1 (the executors run at most `concurrency`
    LLM workers at once, so the total never passes the setting); rpm and tpm divided exactly (the
    limiter takes fractions), so the totals never pass --rpm / --tpm either."""
    share = max(1, share)
    rpm = settings.rpm / share if settings.rpm else None
    tpm = settings.tpm / share if settings.tpm else None
    return max(1, settings.concurrency // share), rpm, tpm


def describe_llm(settings: LLMSettings, mode: str) -> dict[str, Any]:
    """The manifest's `llm` entry for `settings` answered in response format `mode` (never the key)."""
    s = settings
    # a local model is named by its directory, not its full path (a card may be published)
    model = Path(s.model).name if s.backend == "transformers" and s.model else s.model
    info: dict[str, Any] = {"backend": s.backend, "model": model}
    if s.backend == "openai":
        from .openai_backend import host_of, resolve_base_url

        info["base_url_host"] = host_of(resolve_base_url(s))
        info["api_key_env"] = s.api_key_env
    info["params"] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "seed": s.seed,
        **({"extra_body": s.extra_body} if s.extra_body else {}),
    }
    info["structured_output"] = mode
    info["concurrency"] = s.concurrency
    info["max_retries"] = s.max_retries
    info["max_reasks"] = s.max_reasks
    if s.rpm or s.tpm:
        info["rate_limits"] = {"rpm": s.rpm, "tpm": s.tpm}
    return info
