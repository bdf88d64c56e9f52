"""Stage pt: continued pretraining. Documents are tokenized, joined with EOS and cut into
`--block-size` blocks (the tail shorter than a block is dropped and counted); validation perplexity."""

from __future__ import annotations

import math

from medmill.schemas.errors import MedmillError
from medmill.trainers.fit import StageResult, fit, history
from medmill.trainers.modeling import load_causal_lm, load_tokenizer, wrap_lora
from medmill.trainers.options import TrainOptions
from medmill.trainers.preview import length_report, show_example, show_lengths


def to_blocks(dataset, tokenizer, block_size: int):
    """-> (blocks dataset, per-document token lengths, tail tokens dropped). Blocks are cut per
    batch of 1,000 documents by datasets' batched map, so the corpus never sits in one Python list."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MedmillError("the tokenizer has no EOS token; documents could not be separated")

    def tokenize(batch):
        ids = tokenizer(batch["text"], add_special_tokens=True)["input_ids"]
        return {"input_ids": [x + [eos] for x in ids], "n_tokens": [len(x) + 1 for x in ids]}

    def group(batch):
        stream = [t for x in batch["input_ids"] for t in x]
        n = len(stream) // block_size
        return {"input_ids": [stream[i * block_size : (i + 1) * block_size] for i in range(n)]}

    docs = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names, desc="tokenizing")
    lengths = docs["n_tokens"]
    blocks = docs.remove_columns(["n_tokens"]).map(group, batched=True, batch_size=1000, desc="cutting blocks")
    return blocks, lengths, sum(lengths) - len(blocks) * block_size


def run_pt(opts: TrainOptions, config, data) -> StageResult:
    from transformers import DataCollatorForLanguageModeling, Trainer

    tokenizer, added = load_tokenizer(opts.model, opts.template, need_chat=False)
    train, lengths, tail = to_blocks(data.train, tokenizer, opts.block_size)
    if len(train) == 0:
        raise MedmillError(f"the corpus has {sum(lengths)} tokens, less than one --block-size {opts.block_size} block")
    evaluation = None
    if data.validation is not None:
        evaluation, _, _ = to_blocks(data.validation, tokenizer, opts.block_size)
        evaluation = evaluation if len(evaluation) else None
    report = length_report(lengths, opts.block_size, truncated=sum(n > opts.block_size for n in lengths))
    if opts.preview:
        ids = train[0]["input_ids"]
        show_example(tokenizer, ids, [True] * len(ids), f"pt block 1 of {len(train)} ({tail} tail tokens dropped)")
        show_lengths(report, "pt document token lengths (documents longer than a block span blocks)")
    model = wrap_lora(load_causal_lm(opts.model, opts, tokenizer, added), opts, "CAUSAL_LM", new_tokens=added > 0)
    trainer = Trainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        processing_class=tokenizer,
    )
    resumed, metrics = fit(trainer, opts, tokenizer)
    if "eval_loss" in metrics:
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    metrics["blocks"] = float(len(train))
    metrics["tail_tokens_dropped"] = float(tail)
    return StageResult("pt", opts.out, trainer.state.global_step, resumed, metrics, report, history(trainer, ("loss", "eval_loss")))
