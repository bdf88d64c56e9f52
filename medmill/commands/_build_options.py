"""`@build_options(ConfigClass)`: the flags every build command shares, generated from the builder's config.

The common `BuildConfig` fields (limit, seed, split sizes, licences) become flags whose defaults, help
and spelling come from the config class: `BuildConfig` declares them once, a builder's config redeclares
the ones it words or defaults otherwise (`BookQAConfig.val_size`: "grouped by section", 0.05) and
spells a flag otherwise through `json_schema_extra={"flag": "--limit-chunks"}`. The run flags
(--workers, --executor, --ray-address) and --config FILE.yaml follow. The command receives one
`CommonBuildOptions`:

    @build_options(BookQAConfig)
    def build_book_qa(inputs: ..., out: ..., ..., common: CommonBuildOptions = GENERATED,
                      *, llm: LLMSettings, curation: CurationSettings):
        cfg = common.config(BookQAConfig, inputs=inputs, out=out, ..., llm=llm, curation=curation)
        report = run_build(BookQABuilder(), cfg, ..., executor=common.executor())

The flags stand where `common` stands. A builder without a flag for a field leaves it out
(`omit=("limit",)`: the config default applies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from medmill.builders.core.config import BuildConfig
from medmill.builders.streaming.options import RunOptions
from medmill.commands._common import build_config, parse_source_licenses
from medmill.commands._run_options import RayAddressOption, WorkersOption
from medmill.commands._signature import Flag, field_flag, field_option, flag_parameter, swap_parameter
from medmill.config import ConfigOption

if TYPE_CHECKING:
    from medmill.builders.core.steps import LocalExecutor

C = TypeVar("C", bound=BuildConfig)

# in the order the flags appear in --help
COMMON_FIELDS = ("limit", "seed", "val_size", "test_size", "license", "source_licenses")

BuildExecutorOption = typer.Option(
    "local", "--executor",
    help="local: builds that stream (all but book-qa, lit-qa, self-instruct and LLM builds whose concurrency "
         "is below --workers) read, generate, curate and write batch by batch on --workers processes in bounded "
         "memory, the others run their map steps on --workers processes in memory; memory: one process, every "
         "record in memory (the reference path); ray: the same, with the batches or map steps on a Ray cluster "
         "(pip install 'medmill[ray]'). Same dataset dir with each.",
)
RUN_FLAGS: tuple[Flag, ...] = (("workers", int, WorkersOption), ("executor", str, BuildExecutorOption),
                               ("ray_address", str, RayAddressOption), ("config", Path | None, ConfigOption))

GENERATED: Any = None  # the default of a command's `common` parameter: @build_options replaces it


@dataclass(frozen=True)
class CommonBuildOptions:
    """The values of a build's common flags: config fields, their flags (for messages), how to run."""

    fields: dict[str, Any]
    flags: dict[str, str]
    run: RunOptions

    def config_fields(self) -> dict[str, Any]:
        """The config fields the common flags set (keyword arguments of the config class)."""
        return dict(self.fields)

    def config(self, config_cls: type[C], /, **values: Any) -> C:
        """`config_cls(**common fields, **values)`; a bad value is a one-line error naming its flag."""
        return build_config(config_cls, self.flags, **self.fields, **values)

    def executor(self) -> LocalExecutor | None:
        """The executor for `run_build` (None: one process, in memory; local: streamed where the builder can)."""
        if self.run.executor == "local":
            from medmill.builders.streaming.build_stream import StreamExecutor

            return StreamExecutor(self.run.process_count())
        from medmill.builders.streaming.executors import build_executor

        return build_executor(self.run.executor, self.run.workers, self.run.ray_address)


def common_fields(config_cls: type[BuildConfig], omit: Sequence[str] = ()) -> list[str]:
    unknown = sorted(set(omit) - set(COMMON_FIELDS))
    if unknown:
        raise TypeError(f"build_options: {unknown} are not common build fields ({', '.join(COMMON_FIELDS)})")
    return [f for f in COMMON_FIELDS if f not in omit]


def build_options(
    config_cls: type[BuildConfig], *, omit: Sequence[str] = (), help: Mapping[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Swap the `common` parameter of a build command for the common and run flags of `config_cls`.
    `help` rewords a field's flag for a config this command cannot redeclare the field in."""
    fields = common_fields(config_cls, omit)
    by_param = {flag_parameter(config_cls, f): f for f in fields}
    flags_of = {f: field_flag(config_cls, f) for f in fields}
    generated = [field_option(config_cls, f, help=(help or {}).get(f), int_range=True) for f in fields] + list(RUN_FLAGS)

    def make(values: dict[str, Any]) -> CommonBuildOptions:
        values.pop("config", None)  # --config did its work as the flags' defaults
        run = RunOptions(values.pop("executor"), values.pop("workers"), values.pop("ray_address"))
        chosen = {by_param[param]: value for param, value in values.items()}
        if "source_licenses" in chosen:
            chosen["source_licenses"] = parse_source_licenses(chosen["source_licenses"])
        return CommonBuildOptions(chosen, flags_of, run)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        command = swap_parameter(fn, "common", generated, make, "build_options")
        # what the flags were made from, for tests and docs that walk the build commands
        command.build_options = (config_cls, tuple(fields))  # type: ignore[attr-defined]
        command.build_options_help = dict(help or {})  # type: ignore[attr-defined]
        return command

    return decorate
