"""`medmill train pt|sft|rm|dpo|ppo`: train on medmill dataset dirs (or public-format files).

Any SFTConfig / DPOConfig / RewardConfig / TrainingArguments / GRPOConfig / RLOOConfig field (or a
field of medmill's PPOConfig) is accepted as `--name value` without being declared here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from medmill.console import err_console, summary_table

HELP = (
    "Train a model: pt (continued pretraining), sft, rm (reward model), dpo, ppo (--algo ppo|rloo|grpo). "
    "Any trl/transformers config field can be passed as --name value (e.g. --learning_rate 2e-5 --max_steps 100)."
)


def train(
    ctx: typer.Context,
    stage: str = typer.Argument(None, help="pt | sft | rm | dpo | ppo (or `stage:` in the recipe)"),
    config: Path | None = typer.Option(None, "--config", help="YAML recipe; command-line flags override it."),
    model: str | None = typer.Option(None, help="Model dir or Hub id to start from."),
    data: list[str] | None = typer.Option(None, "--data", help="Dataset dir or file, optionally =weight; repeatable."),
    out: str | None = typer.Option(None, help="Output dir (checkpoints, final model, medmill_train.json)."),
    template: str | None = typer.Option(None, help="Chat template for models without one: chatml/qwen, llama3, llama2, baichuan2, chatglm3, vicuna, alpaca."),
    val_size: float | None = typer.Option(None, help="Hold out this share of groups when a dir has no validation split."),
    block_size: int | None = typer.Option(None, help="pt: tokens per training block (default 1024)."),
    drop_long: bool | None = typer.Option(None, "--drop-long", help="Drop examples over max_length instead of truncating them."),
    lora: bool | None = typer.Option(None, "--lora", help="Train a LoRA adapter (peft) instead of all weights."),
    qlora: bool | None = typer.Option(None, "--qlora", help="4-bit QLoRA (needs a CUDA GPU and bitsandbytes)."),
    lora_r: int | None = typer.Option(None, help="LoRA rank (default 16)."),
    lora_alpha: int | None = typer.Option(None, help="LoRA alpha (default 32)."),
    lora_dropout: float | None = typer.Option(None, help="LoRA dropout (default 0.05)."),
    lora_target: str | None = typer.Option(None, help="LoRA target modules: all-linear (default) or a comma list."),
    dtype: str | None = typer.Option(None, help="auto (bf16 on GPUs that have it, else fp32), float32, bfloat16, float16."),
    resume_from: str | None = typer.Option(None, help="Resume from this checkpoint dir (default: last one in --out)."),
    no_resume: bool | None = typer.Option(None, "--no-resume", help="Start fresh even if --out holds checkpoints."),
    algo: str | None = typer.Option(None, help="ppo stage: ppo (medmill's, with critic), rloo or grpo (trl)."),
    reward_model: str | None = typer.Option(None, help="ppo: reward model dir (AutoModelForSequenceClassification)."),
    value_model: str | None = typer.Option(None, help="ppo: critic init (default: the reward model if it shares the vocab, else the policy)."),
    ref_model: str | None = typer.Option(None, help="dpo/ppo without LoRA: reference model (default: --model)."),
    reward_rule: list[str] | None = typer.Option(None, "--reward-rule", help="ppo: target:TEXT=w, eos=w, length:N=w, safety:FILE=w; repeatable."),
    no_preview: bool | None = typer.Option(None, "--no-preview", help="Skip the decoded example and length tables."),
) -> None:
    from medmill.trainers.options import load_recipe, resolve_options
    from medmill.trainers.run import run_training

    extras = list(ctx.args)
    if stage and stage.startswith("-"):  # no stage on the command line: click took the first extra flag for it
        extras, stage = [stage, *extras], None
    recipe = load_recipe(config)
    cli = dict(
        stage=stage, model=model, data=data, out=out, template=template, val_size=val_size, block_size=block_size,
        drop_long=drop_long, lora=lora, qlora=qlora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_target=lora_target, dtype=dtype, resume_from=resume_from, no_resume=no_resume, algo=algo,
        reward_model=reward_model, value_model=value_model, ref_model=ref_model, reward_rules=reward_rule,
        preview=None if no_preview is None else not no_preview,
    )  # fmt: skip
    opts = resolve_options(cli, recipe)
    result = run_training(opts, recipe, extras)
    rows: list[tuple[str, object]] = [("stage", result.stage), ("output", result.out), ("steps", result.global_step)]
    for src in result.sources:
        rows.append((f"data {src.path} ({src.kind})", f"train {src.train}, validation {src.validation}, bad rows {src.bad}"))
    if result.resumed_from:
        rows.append(("resumed from", result.resumed_from))
    if result.lengths:
        rows += [("examples", result.lengths.examples), ("truncated for length", result.lengths.truncated), ("dropped for length", result.lengths.dropped)]
    for key, values in result.history.items():
        if len(values) >= 2:
            rows.append((f"{key} first -> last", f"{values[0]:.4g} -> {values[-1]:.4g}"))
    for key in sorted(result.metrics):
        noise = ("runtime", "per_second", "num_tokens")
        wanted = key.startswith(("eval_", "final_")) or key in ("train_loss", "blocks", "tail_tokens_dropped")
        if wanted and not any(n in key for n in noise):
            rows.append((key, round(result.metrics[key], 4)))
    summary_table(f"medmill train {result.stage}", rows)
    for problem in result.problems:
        err_console.print(f"skipped: {problem}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        help=HELP,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(train)
