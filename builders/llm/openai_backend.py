"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, DeepSeek, Qwen
compatible mode, vLLM, Ollama, llama.cpp server) through the official async client.

The client's own retries are off: the engine retries, so it can count retries, honour Retry-After
and share one backoff policy with every backend. Errors are translated to the engine's kinds here.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import os
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from .cache import Completion
from .errors import CallError, FatalCallError, FormatUnsupported, RequestRejected
from .types import LLMSettings

_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "guided", "structured")
_CONTEXT_WORDS = ("context length", "context_length", "maximum context", "too many tokens", "too long")


def resolve_base_url(settings: LLMSettings) -> str | None:
    return settings.base_url or os.environ.get("OPENAI_BASE_URL") or None


def host_of(url: str | None) -> str:
    """Host[:port] only: a URL may carry credentials or tokens in userinfo or query."""
    if not url:
        return "api.openai.com"
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        date = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, date.timestamp() - time.time()) if date else None


def tls_context():
    """The HTTP library's own default TLS context, built once per process and per certificate setting.

    Every run starts a client, and a client left to itself builds a new context, loading the whole CA
    bundle again (about 50 ms of CPU). A context may serve many clients; the certificate variables
    the library honours (SSL_CERT_FILE, SSL_CERT_DIR) are part of the key, so changing them still counts."""
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=4)
def _tls_context(cert_file: str | None, cert_dir: str | None):
    from openai import DefaultAsyncHttpxClient

    # the httpx flavour this openai release is built on (httpx, or httpx2 in later releases)
    http_library = importlib.import_module(DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])
    create = getattr(http_library, "create_ssl_context", None)
    return create() if create is not None else True  # True: the client builds its default context itself


class OpenAIBackend:
    name = "openai"
    modes = ("json_schema", "json_object", "prompt")

    def __init__(self, settings: LLMSettings) -> None:
        if not settings.model:
            raise FatalCallError("--llm-model is required (the model name the endpoint serves)")
        self.settings = settings
        self.base_url = resolve_base_url(settings)
        if self.base_url and urlsplit(self.base_url).scheme.lower() not in ("http", "https"):
            raise FatalCallError(
                "--llm-base-url (or $OPENAI_BASE_URL) must be an http:// or https:// URL such as "
                "http://127.0.0.1:8000/v1"
            )
        self._key = os.environ.get(settings.api_key_env) or ""
        self._client: Any = None

    @property
    def host(self) -> str:
        return host_of(self.base_url)

    def scrub(self, text: str) -> str:
        """Remove the API key from any text that may reach a user (server errors can echo it)."""
        return text.replace(self._key, "***") if self._key else text

    async def start(self) -> None:
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        # Local servers (vLLM, Ollama, llama.cpp) often need no key; the client insists on one.
        self._client = AsyncOpenAI(
            api_key=self._key or "no-key-set",
            base_url=self.base_url,
            max_retries=0,
            timeout=self.settings.timeout,
            http_client=DefaultAsyncHttpxClient(verify=tls_context()),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def unload(self) -> None:
        """Nothing held between runs (the HTTP client lives for one run, on that run's event loop)."""

    async def complete(
        self,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        response_format: dict[str, Any] | None,
        extra_body: dict[str, Any],
    ) -> Completion:
        """One chat completion. `params`: temperature/top_p/max_tokens/seed (None = server default)."""
        import openai
        from openai.types.chat import ChatCompletion

        body: dict[str, Any] = {"model": self.settings.model, "messages": messages}
        body.update({k: v for k, v in params.items() if v is not None})
        if response_format is not None:
            body["response_format"] = response_format
        body.update(extra_body)
        try:
            # The body is already plain JSON: post it as is. `chat.completions.create` would first walk it
            # through the SDK's TypedDict transforms, which cost more CPU than the rest of a call.
            resp = await self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        except openai.APITimeoutError:
            raise CallError("timeout", f"no answer within {self.settings.timeout:g} s") from None
        except openai.APIConnectionError as e:
            raise CallError("connection", f"connection failed: {type(e.__cause__ or e).__name__}") from None
        except openai.APIStatusError as e:
            raise self._status_error(e, response_format) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as e:
            raise CallError("bad_response", f"unreadable response: {type(e).__name__}") from None
        return self._completion(resp)

    def _completion(self, resp: Any) -> Completion:
        choices = getattr(resp, "choices", None)
        if not choices:
            raise CallError("bad_response", "response without choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        if text is None:
            refusal = getattr(message, "refusal", None)
            if refusal:
                raise RequestRejected("refused", self.scrub(f"the model refused: {refusal}"[:300]))
            raise CallError("bad_response", "response without message content")
        usage = getattr(resp, "usage", None)
        return Completion(
            text=text,
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    def _status_error(self, e: Any, response_format: dict[str, Any] | None) -> Exception:
        status = e.status_code
        detail = self.scrub(_error_detail(e))
        where = f"{self.host} (model {self.settings.model})"
        if status == 429:
            return CallError("rate_limited", "429 rate limited", _retry_after(e.response.headers))
        if status >= 500 or status in (408, 409):
            return CallError("server_error", f"HTTP {status}", _retry_after(e.response.headers))
        if status == 401:
            env = self.settings.api_key_env
            state = "is set" if self._key else "is not set"
            return FatalCallError(f"{where} rejected the API key (401): check the environment variable {env} ({state})")
        if status == 403:
            return FatalCallError(f"{where} refused access (403): the key in {self.settings.api_key_env} lacks permission")
        if status == 404:
            return FatalCallError(f"{where} answered 404: check --llm-base-url and --llm-model ({detail})")
        low = detail.lower()
        if status in (400, 422) and response_format is not None and any(w in low for w in _FORMAT_WORDS):
            return FormatUnsupported(detail)
        if status in (400, 413, 422) and any(w in low for w in _CONTEXT_WORDS):
            return RequestRejected("context_too_long", f"HTTP {status}: {detail}")
        return FatalCallError(f"{where} rejected the request (HTTP {status}): {detail}")


def _error_detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else inner
        if msg:
            return " ".join(str(msg).split())[:300]
    return " ".join(str(getattr(e, "message", "") or e).split())[:300]
