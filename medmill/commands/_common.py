"""Small pieces every build command shares: turning a settings validation error into one line, and
parsing `--source-license FILE=LICENSE`."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from medmill.schemas.errors import MedmillError

M = TypeVar("M", bound=BaseModel)


def option_error(e: ValidationError) -> MedmillError:
    """The first problem of a settings object, as a one-line user error naming the option."""
    err = e.errors()[0]
    where = ".".join(map(str, err["loc"]))
    message = err["msg"].removeprefix("Value error, ")
    return MedmillError(f"bad option {where}: {message}" if where else f"bad option: {message}")


def build_config(model: type[M], **values: Any) -> M:
    """`model(**values)`, with a validation error turned into a one-line MedmillError naming the option."""
    try:
        return model(**values)
    except ValidationError as e:
        raise option_error(e) from None


def parse_source_licenses(items: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        file, sep, lic = item.partition("=")
        if not sep or not file.strip() or not lic.strip():
            raise MedmillError(f"--source-license expects FILE=LICENSE, got {item!r}")
        result[file.strip()] = lic.strip()
    return result
