"""YAML config files for any command: `--config FILE` sets defaults that flags on the command line
override. A file may hold flat keys (`llm_model: qwen-plus`) and/or a section per command
(`build-kg-qa: {per_entity: 8}`); keys use the option names with `_` or `-`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from medmill.schemas.errors import MedmillError


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise MedmillError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise MedmillError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MedmillError(f"config file {path} must hold a mapping of option names to values")
    return data


def defaults_for(command: str, data: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Flat keys apply where the command has such an option; a command's own section must match."""
    defaults = {
        k.replace("-", "_"): v for k, v in data.items() if not isinstance(v, dict) and k.replace("-", "_") in known
    }
    section = data.get(command) or {}
    unknown = sorted(k for k in section if k.replace("-", "_") not in known)
    if unknown:
        raise MedmillError(f"unknown option(s) for {command}: {', '.join(unknown)}")
    defaults.update({k.replace("-", "_"): v for k, v in section.items()})
    return defaults


def _apply_config(ctx: Any, _param: Any, value: Path | None) -> Path | None:
    if value is None:
        return None
    known = {p.name for p in ctx.command.params if p.name}
    try:
        defaults = defaults_for(ctx.info_name or "", load_yaml(value), known)
    except MedmillError as e:
        # typer vendors its own click: its BadParameter is the one its error handling catches
        raise typer.BadParameter(str(e)) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


ConfigOption = typer.Option(
    None,
    "--config",
    help="YAML file with option defaults (flat keys or a section per command); flags override it.",
    is_eager=True,
    callback=_apply_config,
    exists=False,
)
