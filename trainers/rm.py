"""Stage rm: a one-label AutoModelForSequenceClassification (head `score`) trained with trl's
RewardTrainer on preference pairs; reports pairwise accuracy on validation. The saved model (after
`medmill export-model` when LoRA was used) loads with AutoModelForSequenceClassification alone."""

from __future__ import annotations

from medmill.trainers.fit import StageResult, fit, history
from medmill.trainers.modeling import load_scorer, load_tokenizer, wrap_lora
from medmill.trainers.options import TrainOptions
from medmill.trainers.preview import show_example, show_lengths
from medmill.trainers.tokenize import pair_splits


def run_rm(opts: TrainOptions, config, data) -> StageResult:
    from trl import RewardTrainer

    tokenizer, added = load_tokenizer(opts.model, opts.template, need_chat=True)
    train, report, evaluation = pair_splits(data, tokenizer, config.max_length, opts.drop_long)
    if opts.preview:
        row = train[0]
        for side in ("chosen", "rejected"):
            ids = tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=True, return_dict=True)["input_ids"]
            show_example(tokenizer, ids, [True] * len(ids), f"rm pair 1, {side} (scored at its last token)")
        show_lengths(report, "rm token lengths (longer side of each pair)")
    model = wrap_lora(load_scorer(opts.model, opts, tokenizer, added), opts, "SEQ_CLS", new_tokens=added > 0)
    trainer = RewardTrainer(model=model, args=config, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer)
    resumed, metrics = fit(trainer, opts, tokenizer)
    return StageResult("rm", opts.out, trainer.state.global_step, resumed, metrics, report, history(trainer, ("loss", "accuracy", "eval_accuracy", "margin")))
