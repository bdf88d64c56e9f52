"""Is `--model NAME` something we can load? Asked once, quickly, before any data is read.

A name that is not a local directory is handed by transformers to the Hub, which retries for a
minute or more before saying "couldn't connect to huggingface.co" - the user who mistyped a local
path never hears that the path does not exist. Here a missing local path is named at once, and a
possible Hub id is looked up in the local cache, then with one short API call.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medmill.schemas.errors import MedmillError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_TIMEOUT_S = 10.0


def looks_local(name: str) -> bool:
    """A filesystem path rather than a Hub id: absolute, ./ ../ ~, more than one slash, a backslash,
    not a valid repo id, or its first component is a local directory (`out/nope_model` with ./out)."""
    if Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name:
        return True
    if not _REPO_ID.match(name):
        return True
    return "/" in name and Path(name.split("/", 1)[0]).is_dir()


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_model_source(name: str, flag: str = "--model") -> None:
    """Raise a one-line MedmillError when `name` is neither a local model dir nor a Hub repo we can reach."""
    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise MedmillError(f"{flag} {name} is a file; expected a model directory or a Hub repo id (ORG/NAME)")
    if looks_local(name):
        raise MedmillError(f"{flag} {name}: no such local directory ({path.resolve()}), and it is not a Hub repo id (ORG/NAME)")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # downloaded before: transformers loads it from the cache
    not_local = f"{flag} {name} is not a local directory (no {path.resolve()})"
    if _offline():
        raise MedmillError(f"{not_local}, and not in the Hugging Face cache (HF_HUB_OFFLINE is set)")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return  # exists; access is transformers' (and the token's) business
    except RepositoryNotFoundError:
        raise MedmillError(f"{not_local}, and the Hub has no model repo {name} (or it is private: set HF_TOKEN)") from None
    except HfHubHTTPError:
        return  # the Hub answered (a mirror without this API, a 5xx): let transformers try
    except Exception as e:  # no network, DNS, proxy, timeout: every transport error of the HTTP client
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise MedmillError(f"{not_local}, and the Hub ({endpoint}) cannot be reached: {detail}") from None
