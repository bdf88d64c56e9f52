"""Stage dpo: trl DPOTrainer. The reference model is the policy with its adapter disabled under LoRA,
otherwise a frozen copy (of --ref-model when given). Reports reward margins and accuracies."""

from __future__ import annotations

from medmill.trainers.fit import StageResult, fit, history
from medmill.trainers.modeling import load_causal_lm, load_tokenizer, wrap_lora
from medmill.trainers.options import TrainOptions
from medmill.trainers.preview import show_example, show_lengths
from medmill.trainers.tokenize import pair_splits, prompt_and_answer

TRACKED = ("loss", "rewards/margins", "rewards/accuracies", "eval_rewards/margins", "eval_rewards/accuracies")


def run_dpo(opts: TrainOptions, config, data) -> StageResult:
    from trl import DPOTrainer

    tokenizer, added = load_tokenizer(opts.model, opts.template, need_chat=True)
    train, report, evaluation = pair_splits(data, tokenizer, config.max_length, opts.drop_long)
    if opts.preview:
        row = train[0]
        ids, mask = prompt_and_answer(tokenizer, row["prompt"], row["chosen"])
        show_example(tokenizer, ids, mask, "dpo pair 1, chosen")
        show_lengths(report, "dpo token lengths (longer side of each pair)")
    model = wrap_lora(load_causal_lm(opts.model, opts, tokenizer, added), opts, "CAUSAL_LM", new_tokens=added > 0)
    ref = None
    if opts.ref_model and not (opts.lora or opts.qlora):
        ref = load_causal_lm(opts.ref_model, opts, tokenizer, added)
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=config, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer
    )
    resumed, metrics = fit(trainer, opts, tokenizer)
    return StageResult("dpo", opts.out, trainer.state.global_step, resumed, metrics, report, history(trainer, TRACKED))
