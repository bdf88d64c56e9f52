"""`@curation_options(...)`: curation flags generated from the documented `CurationSettings` fields.

Decorate a typer command that takes a `curation: CurationSettings` parameter; the decorator replaces
that parameter, where it stands, with one flag per chosen field (`_signature.swap_parameter`) and
hands the function a validated `CurationSettings`. Help texts, defaults and flag spellings come from the model's fields, so
every build and `medmill filter` spell and explain them the same way.

    @curation_options                      # the flags every build command has
    def build_kg_qa(kg: Path = typer.Argument(...), ..., curation: CurationSettings = None) -> None: ...

    @curation_options(FILTER_FIELDS, fixed={"validate_records": False, "dedup": False})
    def filter_dirs(...): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._common import build_config
from medmill.commands._signature import field_flag, field_option, flag_parameter, swap_parameter
from medmill.schemas.errors import MedmillError

PANEL = "Curation"
BUILD_FIELDS = ("quality", "pii", "pii_action", "safety", "lexicons", "dedup", "dedup_threshold", "dedup_fact_guard",
                "dedup_max_compare", "dedup_bucket_depth",
                "dedup_index", "decontaminate", "decontam_skip_bad_lines")
FILTER_FIELDS = ("quality", "min_chars", "max_chars", "min_cjk_share", "strip_boilerplate", "pii", "pii_action",
                 "pii_types", "safety", "lexicons", "safety_flag_only", "decontaminate", "decontam_ngram",
                 "decontam_field", "decontam_skip_bad_lines")
_FILE_FIELDS = ("lexicons", "decontaminate")


def flag_of(field: str) -> str:
    """The command-line spelling of a CurationSettings field (its first declaration)."""
    return field_flag(CurationSettings, field)


def settings_from_flags(values: dict[str, Any], fixed: dict[str, Any] | None = None) -> CurationSettings:
    """CurationSettings from the generated flags' values (names as parameters), validated once."""
    by_param = {flag_parameter(CurationSettings, f): f for f, info in CurationSettings.model_fields.items() if info.description}
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
    flags = [field_option(CurationSettings, f, panel=PANEL) for f in fields]
    return swap_parameter(fn, "curation", flags, lambda values: settings_from_flags(values, fixed), "curation_options")
