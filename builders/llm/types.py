"""The engine's contract with builders: settings, one request, one result.

Builders build `LLMRequest`s, hand them to `medmill.builders.llm.engine.LLMEngine.run`, and get one
`LLMResult` per request back, in the same order. A failed request is a result with `ok=False`, an
`error` reason code and the raw output when there was one: never an empty answer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LLMSettings(BaseModel):
    """Flags shared by every LLM-using command (also settable from a YAML config file).

    Holds the *name* of the environment variable with the API key, never the key itself, so settings
    can be written to manifests.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "transformers"] = "openai"
    base_url: str | None = None  # default: $OPENAI_BASE_URL
    model: str | None = None  # model name (openai) or a local model directory (transformers)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 1024
    seed: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = 16
    rpm: int | None = None
    tpm: int | None = None
    max_retries: int = 6
    max_reasks: int = 2
    timeout: float = 120.0
    retry_base_delay: float = 0.5  # first backoff (s); doubles per retry, with full jitter
    retry_max_delay: float = 30.0  # backoff cap (s); a longer Retry-After is still honoured up to 10 min
    structured: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    cache: Path | None = None  # default: <out>/llm_cache.sqlite
    batch_size: int = 8  # transformers backend

    @field_validator("api_key_env")
    @classmethod
    def _env_name_not_key(cls, value: str) -> str:
        # A key pasted here by mistake would reach the manifest, the card and error messages: refuse it
        # without repeating it.
        if not _ENV_NAME.fullmatch(value) or (value not in os.environ and _looks_like_key(value)):
            raise ValueError(
                "--llm-api-key-env takes the NAME of the environment variable holding the key "
                "(e.g. DEEPSEEK_API_KEY), not the key itself"
            )
        return value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _looks_like_key(value: str) -> bool:
    """Long, mixed-case-or-digits strings are keys; environment variable names are words (MY_API_KEY)."""
    return len(value) >= 24 and any(c.isdigit() for c in value) and any(c.islower() for c in value)


@dataclass
class LLMRequest:
    """One generation: chat `messages`, and `schema` when the answer must be JSON of that pydantic model."""

    key: str
    messages: list[dict[str, str]]
    schema: type[BaseModel] | None = None
    prompt: dict[str, str] = field(default_factory=dict)  # {"id":..., "version":...}
    params: dict[str, Any] = field(default_factory=dict)  # per-request overrides (temperature, max_tokens, seed)


@dataclass
class LLMResult:
    key: str
    ok: bool
    value: Any = None  # the schema instance, or the text when no schema was asked for
    raw: str | None = None  # last raw model output (kept on failure)
    error: str | None = None  # reason code, e.g. "retries_exhausted", "invalid_output"
    message: str = ""  # one line for humans
    cached: bool = False
    attempts: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None  # of the last completion ("length" = cut at max_tokens)


class Runner(Protocol):
    """What the builder needs from the LLM engine: `run(requests, desc) -> results` in order."""

    def run(self, requests: list[LLMRequest], desc: str = "") -> list[LLMResult]: ...
