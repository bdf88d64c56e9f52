"""The command line a dataset records in its manifest and card: what the user typed, with anything
secret-looking redacted (values of --*token*/--*secret*/--*password*/--*api-key* flags, URL
credentials, `"api_key": "..."` inside JSON arguments)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from medmill.builders.core.secrets import REDACTED, redact_text

_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|secret|password|passwd|api[-_]?key)(?!-env)[\w-]*$", re.IGNORECASE)


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
        out.append(redact_text(arg))
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
