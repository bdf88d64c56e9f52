"""`medmill train STAGE`: options + recipe + extras -> the stage's config -> data -> the stage runner."""

from __future__ import annotations

from pathlib import Path

from medmill.schemas.dataset_dir import check_out_not_input
from medmill.trainers.data import STAGE_INPUT, DataSpec, load_training_data
from medmill.trainers.fit import StageResult, write_run_info
from medmill.trainers.model_source import check_model_source
from medmill.trainers.modeling import qlora_config, resume_point, runtime_defaults
from medmill.trainers.options import TrainOptions, build_config, config_class

# medmill's defaults per stage; any of them can be overridden from the recipe or the command line.
STAGE_DEFAULTS = {
    "pt": {},
    "sft": {"assistant_only_loss": True},
    "rm": {},
    "dpo": {},
    "ppo": {},
}
ALGO_DEFAULTS = {"grpo": {"beta": 0.04}, "rloo": {"beta": 0.05}, "ppo": {}}


def _user_sets(name: str, recipe: dict, extras: list[str]) -> bool:
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    return name in recipe or any(t.split("=", 1)[0] in flags for t in extras)


def run_training(opts: TrainOptions, recipe: dict, extras: list[str]) -> StageResult:
    if opts.qlora:
        qlora_config(opts)  # fails fast (before reading data) without a GPU or bitsandbytes
    cls = config_class(opts.stage, opts.algo)
    defaults = {**runtime_defaults(opts), **STAGE_DEFAULTS[opts.stage]}
    if opts.stage == "ppo":
        defaults.update(ALGO_DEFAULTS[opts.algo])
    config = build_config(cls, defaults, recipe, extras)  # fail on bad flags before reading any data
    resume_point(opts)  # and on a bad --resume-from
    specs = [DataSpec.parse(s) for s in opts.data]
    if opts.out:
        check_out_not_input(Path(opts.out), [spec.path for spec in specs])  # checkpoints never land in a dataset dir
    data = load_training_data(specs, STAGE_INPUT[opts.stage], opts.val_size, config.seed)
    for flag, name in (("--model", opts.model), ("--reward-model", opts.reward_model),
                       ("--value-model", opts.value_model), ("--ref-model", opts.ref_model)):
        if name:
            check_model_source(name, flag)  # then on a model that is nowhere, without the Hub's retries
    if data.validation is not None and not _user_sets("eval_strategy", recipe, extras):
        defaults.update(eval_strategy="steps", eval_steps=config.save_steps)
        config = build_config(cls, defaults, recipe, extras)
    if data.validation is None and not _user_sets("eval_strategy", recipe, extras):
        defaults.update(eval_strategy="no")
        config = build_config(cls, defaults, recipe, extras)
    runner = _runner(opts)
    result = runner(opts, config, data)
    result.sources, result.problems = data.sources, data.problems
    write_run_info(result, opts, config, data, opts.template)
    return result


def _runner(opts: TrainOptions):
    if opts.stage == "pt":
        from medmill.trainers.pt import run_pt

        return run_pt
    if opts.stage == "sft":
        from medmill.trainers.sft import run_sft

        return run_sft
    if opts.stage == "rm":
        from medmill.trainers.rm import run_rm

        return run_rm
    if opts.stage == "dpo":
        from medmill.trainers.dpo import run_dpo

        return run_dpo
    if opts.algo == "ppo":
        from medmill.trainers.ppo import run_ppo

        return run_ppo
    from medmill.trainers.rl import run_trl_rl

    return run_trl_rl
