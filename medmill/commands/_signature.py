"""Generated flags for typer commands: one parameter of a command is swapped, where it stands, for a
group of flags (typer reads `__signature__`), and the command receives one typed object built from
their values. `@curation_options`, `@llm_options` and `@build_options` are made with it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel

# (parameter name, annotation, typer.Option(...))
Flag = tuple[str, Any, Any]


def swap_parameter(fn: Callable[..., Any], name: str, flags: Sequence[Flag], make: Callable[[dict[str, Any]], Any],
                   decorator: str) -> Callable[..., Any]:
    """`fn` as a typer command whose parameter `name` is replaced by `flags` (same place, same kind);
    the command is called with `name=make({flag parameter: value})`."""
    sig = inspect.signature(fn, eval_str=True)
    if name not in sig.parameters:
        raise TypeError(f"{fn.__name__} needs a `{name}` parameter for {decorator}")
    clash = sorted(set(sig.parameters) & {flag for flag, _, _ in flags})
    if clash:
        raise TypeError(f"{fn.__name__} already has parameter(s) {clash} that {decorator} adds")
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name != name:
            params.append(p)
            continue
        params += [inspect.Parameter(flag, p.kind, default=option, annotation=annotation) for flag, annotation, option in flags]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        values = {flag: kwargs.pop(flag) for flag, _, _ in flags if flag in kwargs}
        return fn(*args, **{name: make(values)}, **kwargs)

    new_sig = sig.replace(parameters=params)
    command.__signature__ = new_sig  # type: ignore[attr-defined]
    # typer also reads type hints: give it the evaluated ones (the command's module may defer annotations)
    command.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not p.empty}
    if new_sig.return_annotation is not new_sig.empty:
        command.__annotations__["return"] = new_sig.return_annotation
    del command.__wrapped__  # typer must see the new signature, not the wrapped one
    return command


def _extra(model: type[BaseModel], field: str) -> dict[str, Any]:
    extra = model.model_fields[field].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def field_flag(model: type[BaseModel], field: str) -> str:
    """The command-line spelling of a model field: `json_schema_extra={"flag": ...}`, else `--field-name`
    (`--name/--no-name` for a bool)."""
    info = model.model_fields[field]
    if _extra(model, field).get("flag"):
        return str(_extra(model, field)["flag"])
    name = "--" + field.replace("_", "-")
    return f"{name}/--no-{field.replace('_', '-')}" if info.annotation is bool else name


def flag_parameter(model: type[BaseModel], field: str) -> str:
    """The command's parameter (and --config key) of a field's flag: `--limit-chunks` -> limit_chunks."""
    return field_flag(model, field).split("/")[0].removeprefix("--").replace("-", "_")


def field_option(model: type[BaseModel], field: str, *, panel: str | None = None, help: str | None = None,
                 int_range: bool = False) -> Flag:
    """The flag of one documented model field: default and help from the field; pydantic checks the value
    (one message per bad value for every command). Literal values arrive as text, comma lists
    (`json_schema_extra={"comma": True}`) as one text, mappings as repeatable KEY=VALUE items.
    `int_range`: an int field's ge/le bounds are also the flag's range (shown in --help, checked by click)."""
    info = model.model_fields[field]
    bounds: dict[str, Any] = {}
    if int_range and int in {info.annotation, *get_args(info.annotation)}:  # int or int | None
        bounds = {key: getattr(m, attr) for m in info.metadata for attr, key in (("ge", "min"), ("le", "max")) if hasattr(m, attr)}
    annotation: Any = info.annotation
    default = info.get_default(call_default_factory=True)
    if _extra(model, field).get("comma"):
        annotation, default = str, ""
    elif get_origin(annotation) is Literal:
        annotation = str
    elif get_origin(annotation) is dict:
        annotation, default = list[str], [f"{k}={v}" for k, v in default.items()]
    option = typer.Option(default, field_flag(model, field), help=help or info.description, rich_help_panel=panel, **bounds)
    return flag_parameter(model, field), annotation, option
