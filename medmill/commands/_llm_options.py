"""The LLM flags every LLM-using command shares, added by one decorator.

    from medmill.commands._llm_options import llm_options

    @llm_options
    def build_book_qa(inputs: ..., out: ..., config: Path | None = ConfigOption, *, llm: LLMSettings) -> None:
        with LLMEngine(llm, out) as engine: ...

`llm_options` puts the `--llm-*` options below where the `llm` parameter stands in the command's
signature (`_signature.swap_parameter`), and calls the command with a validated `LLMSettings`. The options are ordinary click options, so `--config FILE.yaml` sets their
defaults like any other (keys are the parameter names: `llm_model: qwen-plus`, `concurrency: 32`;
`extra_body` as a mapping inside the command's section, or as a JSON string).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer

from medmill.builders.llm.types import LLMSettings
from medmill.commands._common import build_config
from medmill.commands._signature import swap_parameter

_PANEL = "LLM"


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object from the command line, or a mapping straight from a YAML config file."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise ValueError(f"not valid JSON ({e.msg}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object, got {value!r}")
    return parsed


def _opt(default: Any, *decls: str, help: str, **kw: Any) -> Any:
    return typer.Option(default, *decls, help=help, rich_help_panel=_PANEL, **kw)


# name -> (annotation, typer option, LLMSettings field)
_OPTIONS: dict[str, tuple[Any, Any, str]] = {
    "llm_backend": (Literal["openai", "transformers"], _opt("openai", "--llm-backend", help="openai (any OpenAI-compatible endpoint) or transformers (a local model dir)."), "backend"),
    "llm_base_url": (str | None, _opt(None, "--llm-base-url", envvar="OPENAI_BASE_URL", help="Endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM), https://api.deepseek.com/v1."), "base_url"),
    "llm_model": (str | None, _opt(None, "--llm-model", help="Model name the endpoint serves, or a local model dir for --llm-backend transformers."), "model"),
    "llm_api_key_env": (str, _opt("OPENAI_API_KEY", "--llm-api-key-env", metavar="NAME", help="Environment variable holding the API key (the key itself is never logged or written)."), "api_key_env"),
    "temperature": (float, _opt(0.7, "--temperature", min=0.0, help="Sampling temperature."), "temperature"),
    "top_p": (float | None, _opt(None, "--top-p", min=0.0, max=1.0, help="Nucleus sampling (server default when unset)."), "top_p"),
    "max_tokens": (int, _opt(1024, "--max-tokens", min=1, help="Max tokens per completion."), "max_tokens"),
    "llm_seed": (int | None, _opt(None, "--llm-seed", help="Sampling seed sent to the server (where supported)."), "seed"),
    "extra_body": (dict | None, _opt(None, "--extra-body", metavar="JSON", parser=_json_object, help='Extra JSON fields for every request, e.g. \'{"enable_thinking": false}\'.'), "extra_body"),
    "concurrency": (int, _opt(16, "--concurrency", min=1, help="Requests in flight at once."), "concurrency"),
    "rpm": (int | None, _opt(None, "--rpm", min=1, help="Max requests per minute (client-side limit)."), "rpm"),
    "tpm": (int | None, _opt(None, "--tpm", min=1, help="Max tokens per minute (client-side limit, estimated then corrected)."), "tpm"),
    "max_retries": (int, _opt(6, "--max-retries", min=0, help="Retries per request on 429/5xx/timeouts/dropped connections."), "max_retries"),
    "max_reasks": (int, _opt(2, "--max-reasks", min=0, help="Re-asks when the output does not validate."), "max_reasks"),
    "request_timeout": (float, _opt(120.0, "--request-timeout", min=0.1, help="Seconds to wait for one completion."), "timeout"),
    "structured_output": (Literal["auto", "json_schema", "json_object", "prompt"], _opt("auto", "--structured-output", help="How JSON answers are requested; auto steps down when a server refuses."), "structured"),
    "cache": (Path | None, _opt(None, "--cache", help="Request cache file (default OUT/llm_cache.sqlite; for a URI --out, a local file that stays the same for "
                                  "that URI: $MEDMILL_CACHE_DIR, else $XDG_CACHE_HOME/medmill, else ~/.cache/medmill, then "
                                  "outputs/<URI>-<hash>/llm_cache.sqlite); a killed run resumes from it without paying "
                                  "again; share one across builds to never pay twice."), "cache"),
    "llm_batch_size": (int, _opt(8, "--llm-batch-size", min=1, help="Batch size of the transformers backend."), "batch_size"),
}


def settings_from_options(values: dict[str, Any]) -> LLMSettings:
    """Turn the option values into LLMSettings; a bad combination is a one-line MedmillError."""
    fields = {_OPTIONS[name][2]: value for name, value in values.items()}
    if fields.get("extra_body") is None:
        fields.pop("extra_body", None)
    flags = {field: "--" + name.replace("_", "-") for name, (_a, _o, field) in _OPTIONS.items()}
    return build_config(LLMSettings, flags, **fields)


def llm_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a typer command that takes `llm: LLMSettings`; see the module docstring."""
    flags = [(name, annotation, option) for name, (annotation, option, _field) in _OPTIONS.items()]
    return swap_parameter(fn, "llm", flags, settings_from_options, "llm_options")
