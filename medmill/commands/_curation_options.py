"""`@curation_options`: the curation flags every build command shares.

Decorate a typer command function that takes a `curation: CurationSettings` parameter; the decorator
replaces that parameter with the flags below (typer reads `__signature__`) and hands the function a
ready `CurationSettings`. One place defines the flags, so every build spells them the same way.

    @curation_options
    def build_kg_qa(kg: Path = typer.Argument(...), ..., curation: CurationSettings = None) -> None:
        steps = curation_steps("sft", curation)
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from medmill.builders.curation.settings import CurationSettings

_PARAMS: list[tuple[str, Any, Any]] = [
    ("quality", bool, typer.Option(True, "--quality/--no-quality", help="Quality rules (length, repetition, garble, boilerplate).", rich_help_panel="Curation")),
    ("pii", bool, typer.Option(True, "--pii/--no-pii", help="Detect PII (phones, ID numbers, emails, ...).", rich_help_panel="Curation")),
    ("pii_action", str, typer.Option("redact", "--pii-action", help="redact: typed placeholders like <PHONE>; drop: reject the record.", rich_help_panel="Curation")),
    ("safety", bool, typer.Option(True, "--safety/--no-safety", help="Safety lexicon (categories drop or flag).", rich_help_panel="Curation")),
    ("safety_lexicon", list[Path], typer.Option([], "--safety-lexicon", help="Extra safety lexicon file (yaml/txt); repeatable.", rich_help_panel="Curation")),
    ("dedup", bool, typer.Option(True, "--dedup/--no-dedup", help="Exact and MinHash near-duplicate removal.", rich_help_panel="Curation")),
    ("dedup_threshold", float, typer.Option(0.6, "--dedup-threshold", help="Jaccard similarity at or above which records are near-duplicate candidates (kept when they state different facts).", rich_help_panel="Curation")),
    ("dedup_fact_guard", bool, typer.Option(True, "--dedup-fact-guard/--no-dedup-fact-guard", help="Keep near-identical records that differ in entity names, KG values, medical terms or numbers.", rich_help_panel="Curation")),
    ("dedup_index", Path | None, typer.Option(None, "--dedup-index", help="Persisted dedup index: dedup against earlier runs and add this one.", rich_help_panel="Curation")),
    ("decontaminate", list[Path], typer.Option([], "--decontaminate", help="Eval set (dataset dir, JSON/JSONL/CSV) whose long n-grams must not appear; repeatable.", rich_help_panel="Curation")),
]


def curation_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Swap the `curation` parameter of a typer command for the shared curation flags."""
    sig = inspect.signature(fn, eval_str=True)
    if "curation" not in sig.parameters:
        raise TypeError(f"{fn.__name__} needs a `curation: CurationSettings` parameter")
    kept = [p for p in sig.parameters.values() if p.name != "curation"]
    clash = sorted({p.name for p in kept} & {name for name, _, _ in _PARAMS})
    if clash:
        raise TypeError(f"{fn.__name__} already has parameter(s) {clash} that curation_options adds")
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in _PARAMS
    ]
    positional = [p for p in kept if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    rest = [p for p in kept if p not in positional]
    # keyword-only keeps typer happy whatever the order of defaults; var-kwargs stay last
    params = positional + [p for p in rest if p.kind != p.VAR_KEYWORD] + added + [p for p in rest if p.kind == p.VAR_KEYWORD]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["curation"] = settings_from_flags({name: kwargs.pop(name) for name, _, _ in _PARAMS if name in kwargs})
        return fn(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    hints = typing.get_type_hints(fn)
    hints.pop("curation", None)
    hints.update({name: annotation for name, annotation, _ in _PARAMS})
    wrapper.__annotations__ = hints
    del wrapper.__wrapped__  # typer must see the new signature, not the wrapped one
    return wrapper


def settings_from_flags(flags: dict[str, Any]) -> CurationSettings:
    """Turn the decorator's flag values (missing ones take their defaults) into settings."""
    from medmill.schemas.errors import MedmillError

    def get(name: str) -> Any:
        if name in flags:
            return flags[name]
        default = next(d for n, _, d in _PARAMS if n == name)
        return default.default

    action = get("pii_action")
    if action not in ("redact", "drop"):
        raise MedmillError(f"--pii-action must be redact or drop, got {action!r}")
    threshold = get("dedup_threshold")
    if not 0.0 < threshold <= 1.0:
        raise MedmillError(f"--dedup-threshold must be in (0, 1], got {threshold}")
    for path in [*get("safety_lexicon"), *get("decontaminate")]:
        if not Path(path).exists():
            raise MedmillError(f"file not found: {path}")
    return CurationSettings(
        quality=get("quality"),
        pii=get("pii"),
        pii_action=action,
        safety=get("safety"),
        lexicons=list(get("safety_lexicon")),
        dedup=get("dedup"),
        dedup_threshold=threshold,
        dedup_fact_guard=get("dedup_fact_guard"),
        dedup_index=get("dedup_index"),
        decontaminate=list(get("decontaminate")),
    )
