"""Small pieces every build command shares: turning a settings validation error into one line, and
parsing repeated `KEY=VALUE` flags (`--source-license FILE=LICENSE`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from medmill.schemas.errors import MedmillError

M = TypeVar("M", bound=BaseModel)


def option_error(e: ValidationError, flags: Mapping[str, str] | None = None) -> MedmillError:
    """The first problem of a settings object, as a one-line user error naming the option: the one
    place a ValidationError becomes a message. `flags` maps field names to their flag (`--safety-lexicon`)."""
    err = e.errors()[0]
    loc = [str(x) for x in err["loc"]]
    if flags and loc and loc[0] in flags:
        where = flags[loc[0]]
    else:
        where = ".".join(loc)
    message = err["msg"].removeprefix("Value error, ")
    return MedmillError(f"bad option {where}: {message}" if where else f"bad option: {message}")


def build_config(config_cls: type[M], flags: Mapping[str, str] | None = None, /, **values: Any) -> M:
    """`config_cls(**values)`, with a validation error turned into a one-line MedmillError naming the
    option (`flags` maps field names to their flags)."""
    try:
        return config_cls(**values)
    except ValidationError as e:
        raise option_error(e, flags) from None


def parse_pairs(items: list[str], flag: str, shape: str = "KEY=VALUE") -> dict[str, str]:
    """Repeated `KEY=VALUE` flag values as a mapping; a malformed one is a one-line error naming the flag."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise MedmillError(f"{flag} expects {shape}, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def parse_source_licenses(items: list[str]) -> dict[str, str]:
    return parse_pairs(items, "--source-license", "FILE=LICENSE")
