"""`train ppo --algo rloo|grpo`: trl's critic-free RLOOTrainer / GRPOTrainer with the trained reward
model (a one-label sequence classifier path, which trl loads itself) plus medmill's rule rewards."""

from __future__ import annotations

from medmill.schemas.errors import MedmillError
from medmill.trainers.fit import StageResult, fit, history
from medmill.trainers.modeling import load_causal_lm, load_tokenizer, wrap_lora
from medmill.trainers.options import TrainOptions
from medmill.trainers.preview import length_report, show_example, show_lengths
from medmill.trainers.rewards import Response, RuleReward, parse_rules

TRACKED = ("loss", "reward", "reward_std", "kl", "entropy", "completions/mean_length", "clip_ratio/region_mean")


def rule_function(rule: RuleReward, tokenizer, budget: int):
    """A trl reward function (prompts, completions, **kw) -> list[float] for one rule (unweighted:
    trl applies `reward_weights`)."""

    def reward(prompts, completions, **kwargs):
        out = []
        for completion in completions:
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            # trl strips EOS from decoded completions; a completion shorter than the budget ended on EOS.
            out.append(rule.fn(Response(text, n, ended=n < budget)))
        return out

    reward.__name__ = rule.name.split("=")[0].replace(":", "_")
    return reward


def run_trl_rl(opts: TrainOptions, config, data) -> StageResult:
    from trl import GRPOTrainer, RLOOTrainer

    rules = parse_rules(opts.reward_rules)
    tokenizer, added = load_tokenizer(opts.model, opts.template, need_chat=True)
    funcs: list = ([opts.reward_model] if opts.reward_model else []) + [rule_function(r, tokenizer, config.max_completion_length or 10**9) for r in rules]
    if not funcs:
        raise MedmillError(f"--algo {opts.algo} needs a reward: --reward-model PATH and/or --reward-rule SPEC")
    if config.reward_weights is None and rules:
        config.reward_weights = ([1.0] if opts.reward_model else []) + [r.weight for r in rules]
    lengths = [
        len(tokenizer.apply_chat_template(p, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"])
        for p in data.train["prompt"]
    ]
    report = length_report(lengths, getattr(config, "max_prompt_length", None))
    if opts.preview:
        ids = tokenizer.apply_chat_template(data.train[0]["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
        show_example(tokenizer, ids, [False] * len(ids), f"{opts.algo} prompt 1 (completions are sampled)")
        show_lengths(report, f"{opts.algo} prompt token lengths")
    model = wrap_lora(load_causal_lm(opts.model, opts, tokenizer, added), opts, "CAUSAL_LM", new_tokens=added > 0)
    cls = GRPOTrainer if opts.algo == "grpo" else RLOOTrainer
    trainer = cls(model=model, reward_funcs=funcs, args=config, train_dataset=data.train, eval_dataset=data.validation, processing_class=tokenizer)
    resumed, metrics = fit(trainer, opts, tokenizer)
    return StageResult(f"ppo/{opts.algo}", opts.out, trainer.state.global_step, resumed, metrics, report, history(trainer, TRACKED))
