"""The command line a dataset records in its manifest and card: what the user typed, with anything
secret-looking redacted (URL credentials, values of --*token*/--*secret*/--*password*/--*api-key* flags)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|secret|password|passwd|api[-_]?key)(?!-env)[\w-]*$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:api[-_]?key|key|token|access_token|sig|signature)=)[^&\s]+", re.IGNORECASE)
REDACTED = "***"


def redact_args(args: list[str]) -> list[str]:
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, value = arg.partition("=")
        if _SECRET_FLAG.match(flag):
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        arg = _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", arg)
        arg = _QUERY_SECRET.sub(lambda m: m.group("key") + REDACTED, arg)
        out.append(arg)
    return out


def invocation(fallback: list[str]) -> str:
    """`medmill <args>` as typed when run from the console script or `python -m medmill.cli`;
    otherwise (called from Python, e.g. tests) the given fallback words."""
    prog = Path(sys.argv[0]).name if sys.argv else ""
    if prog in {"medmill", "cli.py", "__main__.py"} and len(sys.argv) > 1:
        words = ["medmill", *sys.argv[1:]]
    else:
        words = ["medmill", *map(str, fallback)]
    return shlex.join(redact_args(words))
