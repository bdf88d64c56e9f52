"""Keep secrets out of everything a build writes (manifest, card) and prints.

Settings hold the *name* of the variable with an API key, never the key; but users can still pass a
key inside `--extra-body '{"api_key": ...}'` or a URL with credentials. Everything written goes
through `redact` first.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

SECRET_KEY = re.compile(
    r"(api[-_]?key|apikey|token|secret|password|passwd|authorization|access[-_]?key|private[-_]?key|credential)",
    re.IGNORECASE,
)
# names of *variables* that hold a key are fine to show
_NAME_OF_VARIABLE = re.compile(r"(_env|_env_var|_name|_path|_file|_count|_len|_tokens|tokens?_.*|max_tokens)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:api[-_]?key|key|token|access_token|sig|signature)=)[^&\s\"']+", re.IGNORECASE)
_JSON_SECRET = re.compile(
    r"(?P<key>[\"']?[\w-]*(?:api[-_]?key|apikey|token|secret|password|passwd|authorization|access[-_]?key)[\w-]*[\"']?\s*[:=]\s*)"
    r"(?P<q>[\"'])(?P<value>[^\"']+)(?P=q)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key)) and not _NAME_OF_VARIABLE.search(key)


def redact_text(text: str) -> str:
    """URL credentials, secret query parameters and `"api_key": "..."` pairs inside a string."""
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    text = _QUERY_SECRET.sub(lambda m: m.group("key") + REDACTED, text)

    def _json(m: re.Match) -> str:
        name = m.group("key").strip("\"' :=")
        if not is_secret_key(name):
            return m.group(0)
        return f"{m.group('key')}{m.group('q')}{REDACTED}{m.group('q')}"

    return _JSON_SECRET.sub(_json, text)


def redact(value: Any) -> Any:
    """A copy of `value` (dicts, lists, strings) with secret-looking entries replaced by ***."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and isinstance(v, str) and v:
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
