"""YAML config files for any command: `--config FILE` sets defaults that flags on the command line
override. A file may hold flat keys (`llm_model: qwen-plus`) and/or a section per command
(`build-kg-qa: {per_entity: 8}`); keys use the option names with `_` or `-`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import typer
import yaml

from medmill.schemas.errors import MedmillError

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _config_text(path: Path) -> str:
    """The file as text: UTF-8 (with or without BOM), UTF-16 with a BOM, or GB18030 (a GBK comment
    written on Windows), detected like every input; anything else is a one-line error."""
    from medmill.builders.readers.textio import detect_encoding

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise MedmillError(f"config file not found: {path}") from None
    except OSError as e:
        raise MedmillError(f"cannot read config file {path}: {e.strerror or e}") from None
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise MedmillError(f"config file {path} is not valid UTF-16 text; save it as UTF-8") from None
    if b"\x00" in data:
        raise MedmillError(f"config file {path} is binary, not YAML text")
    try:
        return data.decode(detect_encoding(data))
    except MedmillError as e:
        raise MedmillError(f"config file {path}: {e}") from None


def load_yaml(path: Path) -> dict[str, Any]:
    text = _config_text(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise MedmillError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MedmillError(f"config file {path} must hold a mapping of option names to values")
    return data


def _key(name: Any) -> str:
    return str(name).replace("-", "_")


def _unknown(keys: list[str], where: str, candidates: set[str]) -> MedmillError:
    """An error naming unknown keys, each with its close matches among `candidates`."""
    parts = []
    for key in keys:
        close = difflib.get_close_matches(_key(key), sorted(candidates), n=2, cutoff=0.7)
        parts.append(f"{key} (did you mean {' or '.join(close)}?)" if close else str(key))
    return MedmillError(f"unknown option(s) {where}: {', '.join(parts)}")


def defaults_for(
    command: str,
    data: dict[str, Any],
    known: set[str],
    others: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """This command's defaults from a config file: flat keys it has as options, then its own section.

    `others` maps every other command of the program to its options: a flat key one of them knows
    is theirs (a file may be shared by several commands); a flat key no command knows is a typo and
    an error with close matches (a typo'd `privat: true` must not make a push public). A section
    (a key that is a command's name) must be a mapping; keys of this command's section must be its
    options. Without `others`, flat keys this command does not know are not checked.
    """
    commands = set(others or {}) | {command}
    everyone = known.union(*(others or {}).values())
    defaults: dict[str, Any] = {}
    unknown_flat: list[str] = []
    for k, v in data.items():
        name = _key(k)
        if k in commands:
            if v is None or isinstance(v, dict):
                continue  # a section (checked below when it is this command's)
            if isinstance(v, bool) and name in everyone:
                pass  # `dedup: false` is a flat option (the builds' --no-dedup), not a section
            else:
                raise MedmillError(
                    f"section {k} must be a mapping of option names to values, got {type(v).__name__} {v!r}"
                )
        if isinstance(v, dict):
            if others is not None:
                close = difflib.get_close_matches(str(k), sorted(commands), n=1, cutoff=0.7)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise MedmillError(f"unknown section {k}{hint}: sections are named after commands")
            continue
        if name in known:
            defaults[name] = v
        elif others is not None and name not in everyone:
            unknown_flat.append(str(k))
    if unknown_flat:
        raise _unknown(unknown_flat, "in the config file (no command has them)", everyone)
    section = data.get(command) or {}
    unknown = sorted(str(k) for k in section if _key(k) not in known)
    if unknown:
        raise _unknown(unknown, f"for {command}", known)
    defaults.update({_key(k): v for k, v in section.items()})
    return defaults


def _other_commands(ctx: Any) -> dict[str, set[str]] | None:
    """Every other command of the program and its option names (None outside a command group)."""
    group = getattr(ctx.parent, "command", None) if ctx.parent is not None else None
    commands = getattr(group, "commands", None)
    if not commands:
        return None
    return {
        name: {p.name for p in cmd.params if p.name}
        for name, cmd in commands.items()
        if name != ctx.info_name
    }


def _apply_config(ctx: Any, _param: Any, value: Path | None) -> Path | None:
    if value is None:
        return None
    known = {p.name for p in ctx.command.params if p.name}
    try:
        defaults = defaults_for(ctx.info_name or "", load_yaml(value), known, _other_commands(ctx))
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
