"""`@curation_options(...)`: curation flags generated from the documented `CurationSettings` fields.

Decorate a typer command that takes a `curation: CurationSettings` parameter; the decorator replaces
that parameter with one flag per chosen field (typer reads `__signature__`) and hands the function a
validated `CurationSettings`. Help texts, defaults and flag spellings come from the model's fields, so
every build and `medmill filter` spell and explain them the same way.

    @curation_options                      # the flags every build command has
    def build_kg_qa(kg: Path = typer.Argument(...), ..., curation: CurationSettings = None) -> None: ...

    @curation_options(FILTER_FIELDS, fixed={"validate_records": False, "dedup": False})
    def filter_dirs(...): ...
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_origin

import typer

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._common import build_config
from medmill.schemas.errors import MedmillError

PANEL = "Curation"
BUILD_FIELDS = ("quality", "pii", "pii_action", "safety", "lexicons", "dedup", "dedup_threshold", "dedup_index",
                "decontaminate")
FILTER_FIELDS = ("quality", "min_chars", "max_chars", "min_cjk_share", "strip_boilerplate", "pii", "pii_action",
                 "pii_types", "safety", "lexicons", "safety_flag_only", "decontaminate", "decontam_ngram",
                 "decontam_field")
_FILE_FIELDS = ("lexicons", "decontaminate")


def flag_of(field: str) -> str:
    """The command-line spelling of a CurationSettings field (its first declaration)."""
    info = CurationSettings.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("flag"):
        return str(extra["flag"])
    name = "--" + field.replace("_", "-")
    return f"{name}/--no-{field.replace('_', '-')}" if info.annotation is bool else name


def _param_name(field: str) -> str:
    return flag_of(field).split("/")[0].removeprefix("--").replace("-", "_")


def _option(field: str) -> tuple[str, Any, Any]:
    """(parameter name, annotation, typer.Option) of one field."""
    info = CurationSettings.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    annotation: Any = info.annotation
    default = info.get_default(call_default_factory=True)
    if extra.get("comma"):
        annotation, default = str, ""
    elif get_origin(annotation) is Literal:
        annotation = str  # pydantic checks the value: one message for every command
    return _param_name(field), annotation, typer.Option(
        default, flag_of(field), help=info.description, rich_help_panel=PANEL
    )


def settings_from_flags(values: dict[str, Any], fixed: dict[str, Any] | None = None) -> CurationSettings:
    """CurationSettings from the generated flags' values (names as parameters), validated once."""
    by_param = {_param_name(f): f for f in CurationSettings.model_fields if CurationSettings.model_fields[f].description}
    fields: dict[str, Any] = dict(fixed or {})
    for param, value in values.items():
        field = by_param[param]
        extra = CurationSettings.model_fields[field].json_schema_extra
        if isinstance(extra, dict) and extra.get("comma"):
            items = [v.strip().upper() for v in str(value).split(",") if v.strip()]
            if not items:
                continue
            value = items
        fields[field] = value
    for field in _FILE_FIELDS:
        for path in fields.get(field) or []:
            if not Path(path).exists():
                raise MedmillError(f"file not found: {path}")
    return curation_config(**fields)


def curation_config(**fields: Any) -> CurationSettings:
    """CurationSettings, with a bad value reported under its flag (`--min-chars: ...`)."""
    return build_config(CurationSettings, {f: flag_of(f).split("/")[0] for f in CurationSettings.model_fields}, **fields)


def curation_options(
    fn: Callable[..., Any] | None = None, /, fields: Sequence[str] = BUILD_FIELDS, fixed: dict[str, Any] | None = None
) -> Any:
    """Swap the `curation` parameter of a typer command for the flags of `fields`."""
    if fn is None:
        return lambda f: curation_options(f, fields=fields, fixed=fixed)
    options = [_option(f) for f in fields]
    sig = inspect.signature(fn, eval_str=True)
    if "curation" not in sig.parameters:
        raise TypeError(f"{fn.__name__} needs a `curation: CurationSettings` parameter")
    kept = [p for p in sig.parameters.values() if p.name != "curation"]
    clash = sorted({p.name for p in kept} & {name for name, _, _ in options})
    if clash:
        raise TypeError(f"{fn.__name__} already has parameter(s) {clash} that curation_options adds")
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, annotation, default in options]
    positional = [p for p in kept if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    rest = [p for p in kept if p not in positional]
    # keyword-only keeps typer happy whatever the order of defaults; var-kwargs stay last
    params = positional + [p for p in rest if p.kind != p.VAR_KEYWORD] + added + [p for p in rest if p.kind == p.VAR_KEYWORD]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name, _, _ in options if name in kwargs}
        kwargs["curation"] = settings_from_flags(values, fixed)
        return fn(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    hints = typing.get_type_hints(fn)
    hints.pop("curation", None)
    hints.update({name: annotation for name, annotation, _ in options})
    wrapper.__annotations__ = hints
    del wrapper.__wrapped__  # typer must see the new signature, not the wrapped one
    return wrapper
