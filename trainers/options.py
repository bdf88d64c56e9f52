"""One parser for every stage: YAML recipe < CLI flags, medmill options + any trl/transformers field.

medmill's own options (model, data, LoRA, template, ...) are declared once in `TrainOptions`. Every
other key, in the recipe or as `--name value` on the command line, must be a field of the stage's
config dataclass (SFTConfig, DPOConfig, RewardConfig, TrainingArguments, GRPOConfig, RLOOConfig or
medmill's PPOConfig) and is converted by transformers' own HfArgumentParser, so nothing is re-declared.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medmill.schemas.errors import MedmillError

STAGES = ("pt", "sft", "rm", "dpo", "ppo")
ALGOS = ("ppo", "rloo", "grpo")


@dataclass
class TrainOptions:
    """What medmill itself decides; the stage's trl config holds the rest."""

    stage: str = ""
    model: str = ""
    data: list[str] = field(default_factory=list)
    out: str = ""
    template: str | None = None
    val_size: float = 0.0
    block_size: int = 1024
    drop_long: bool = False
    lora: bool = False
    qlora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target: str = "all-linear"
    dtype: str = "auto"
    resume_from: str | None = None
    no_resume: bool = False
    algo: str = "ppo"
    reward_model: str | None = None
    value_model: str | None = None
    ref_model: str | None = None
    reward_rules: list[str] = field(default_factory=list)
    preview: bool = True


OPTION_NAMES = {f.name for f in dataclasses.fields(TrainOptions)}
OPTION_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrainOptions)}


def config_class(stage: str, algo: str = "ppo") -> type:
    """The dataclass whose fields a stage accepts besides medmill's own options."""
    if stage == "pt":
        from transformers import TrainingArguments

        return TrainingArguments
    if stage == "sft":
        from trl import SFTConfig

        return SFTConfig
    if stage == "rm":
        from trl import RewardConfig

        return RewardConfig
    if stage == "dpo":
        from trl import DPOConfig

        return DPOConfig
    if stage == "ppo":
        if algo == "rloo":
            from trl import RLOOConfig

            return RLOOConfig
        if algo == "grpo":
            from trl import GRPOConfig

            return GRPOConfig
        from medmill.trainers.ppo_config import PPOConfig

        return PPOConfig
    raise MedmillError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")


def load_recipe(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise MedmillError(f"recipe not found: {path}") from None
    except yaml.YAMLError as e:
        raise MedmillError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MedmillError(f"recipe {path} must be a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _unknown(name: str, known: set[str], where: str) -> MedmillError:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return MedmillError(f"unknown option {name!r} {where}{hint}")


class _Parser:
    """HfArgumentParser for one config class, with argparse errors turned into MedmillError."""

    def __init__(self, cls: type):
        from transformers import HfArgumentParser

        class Quiet(HfArgumentParser):
            def error(self, message):  # argparse would print usage and exit
                raise MedmillError(f"bad value: {message}")

        self.parser = Quiet(cls)
        self.dest_of = {s: a.dest for a in self.parser._actions for s in a.option_strings}
        self.action_of = {a.dest: a for a in self.parser._actions}
        self.fields = {f.name for f in dataclasses.fields(cls) if f.init}

    def parse(self, args: list[str], where: str) -> dict[str, Any]:
        given = []
        for token in args:
            if token.startswith("--"):
                flag = token.split("=", 1)[0]
                if flag not in self.dest_of:
                    raise _unknown(flag[2:].replace("-", "_"), self.fields | OPTION_NAMES, where)
                given.append(self.dest_of[flag])
        namespace, rest = self.parser.parse_known_args(args)
        if rest:
            raise MedmillError(f"unexpected argument(s) {' '.join(rest)} {where}")
        return {dest: getattr(namespace, dest) for dest in given}


    def coerce(self, name: str, value: Any, where: str) -> Any:
        """A recipe value typed the way the flag would be: YAML 1.1 reads `1e-3` as a string, and a
        list or text where a number belongs must fail here, not deep inside the trainer."""
        action = self.action_of.get(name)
        if action is None or value is None or action.type is None:
            return value
        if action.nargs in ("+", "*") and isinstance(value, list):
            return [_typed(action.type, v, name, where) for v in value]
        return _typed(action.type, value, name, where)


def _typed(kind: Any, value: Any, name: str, where: str) -> Any:
    wanted = {"int": "an integer", "float": "a number", "string_to_bool": "true or false"}.get(getattr(kind, "__name__", ""), kind)
    bad = MedmillError(f"bad value {value!r} for {name} {where}: expected {wanted}")
    if kind in (int, float):
        if isinstance(value, bool | list | dict):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if kind is int:
            if not number.is_integer():
                raise bad
            return int(number)
        return number
    if getattr(kind, "__name__", "") == "string_to_bool":
        if isinstance(value, bool):
            return value
        if not isinstance(value, str | int):
            raise bad
        try:
            return kind(str(value))
        except Exception:  # argparse's ArgumentTypeError and friends
            raise bad from None
    return value


def build_config(cls: type, defaults: dict[str, Any], recipe: dict[str, Any], extras: list[str]):
    """defaults < recipe < CLI extras -> an instance of the stage's config class."""
    parser = _Parser(cls)
    from_recipe = {}
    for key, value in recipe.items():
        if key in OPTION_NAMES:
            continue
        if key not in parser.fields:
            raise _unknown(key, parser.fields | OPTION_NAMES, f"in the recipe for {cls.__name__}")
        from_recipe[key] = parser.coerce(key, value, f"in the recipe for {cls.__name__}")
    from_cli = parser.parse(extras, f"for {cls.__name__}")
    kwargs = {**defaults, **from_recipe, **from_cli}
    if kwargs.get("hub_token"):
        # Trainer pickles its arguments into every checkpoint (training_args.bin): a token given as a
        # field would be published with the run dir. huggingface_hub reads it from HF_TOKEN instead.
        os.environ["HF_TOKEN"] = str(kwargs.pop("hub_token"))
    try:
        with warnings.catch_warnings():
            if "gradient_checkpointing" not in kwargs:
                # trl configs default the deprecated alias themselves; only a user who set it should hear about it
                warnings.filterwarnings("ignore", message="`gradient_checkpointing", category=FutureWarning)
            return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise MedmillError(f"invalid {cls.__name__} settings: {str(e).splitlines()[0]}") from None


def _option_value(name: str, value: Any) -> Any:
    """A medmill option from the recipe, typed as declared in TrainOptions (see _typed)."""
    declared = OPTION_TYPES[name]
    if declared in ("int", "float"):
        return _typed(int if declared == "int" else float, value, name, "in the recipe")
    if declared == "bool" and not isinstance(value, bool):
        raise MedmillError(f"bad value {value!r} for {name} in the recipe: expected true or false")
    if declared == "list[str]" and isinstance(value, int | float | bool | dict):
        raise MedmillError(f"bad value {value!r} for {name} in the recipe: expected a list of text")
    return value


def resolve_options(cli: dict[str, Any], recipe: dict[str, Any]) -> TrainOptions:
    """recipe < CLI for medmill's own options; CLI values of None / empty mean 'not given'."""
    values = {k: _option_value(k, v) for k, v in recipe.items() if k in OPTION_NAMES}
    values.update({k: v for k, v in cli.items() if v not in (None, [], ())})
    opts = TrainOptions(**values)
    if isinstance(opts.data, str):
        opts.data = [opts.data]
    if isinstance(opts.reward_rules, str):
        opts.reward_rules = [opts.reward_rules]
    if not opts.stage:
        raise MedmillError(f"no stage given: medmill train {'|'.join(STAGES)} ... (or `stage:` in the recipe)")
    if opts.stage not in STAGES:
        raise MedmillError(f"unknown stage {opts.stage!r}; choose one of: {', '.join(STAGES)}")
    if opts.algo not in ALGOS:
        raise MedmillError(f"unknown --algo {opts.algo!r}; choose one of: {', '.join(ALGOS)}")
    for name in ("block_size", "lora_r", "lora_alpha"):
        if getattr(opts, name) < 1:
            raise MedmillError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= opts.lora_dropout < 1:
        raise MedmillError("--lora-dropout must be in [0, 1)")
    for name in ("model", "out"):
        if not getattr(opts, name):
            raise MedmillError(f"--{name} is required (on the command line or in the recipe)")
    # Local paths are made absolute so adapters record a base model that export-model can find later.
    for name in ("model", "reward_model", "value_model", "ref_model"):
        value = getattr(opts, name)
        if value and Path(value).exists():
            setattr(opts, name, str(Path(value).resolve()))
    return opts
