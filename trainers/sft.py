"""Stage sft: trl SFTTrainer on conversations, loss on assistant tokens only by default."""

from __future__ import annotations

import logging

from medmill.schemas.errors import MedmillError
from medmill.trainers.fit import StageResult, fit, history
from medmill.trainers.modeling import load_causal_lm, load_tokenizer, wrap_lora
from medmill.trainers.options import TrainOptions
from medmill.trainers.preview import show_example, show_lengths
from medmill.trainers.tokenize import tokenize_conversations

log = logging.getLogger(__name__)


def ensure_generation_markers(tokenizer) -> None:
    """Assistant-only loss needs `{% generation %}` markers; patch known templates the way trl does,
    and keep the patched template on the tokenizer so every checkpoint saves what was trained on."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return
    try:
        tokenizer.chat_template = get_training_chat_template(tokenizer)
    except ValueError:
        raise MedmillError(
            "the tokenizer's chat template has no {% generation %} markers, so assistant-only loss cannot be "
            "computed; pass --template NAME (chatml, llama3, ...) or --assistant_only_loss false"
        ) from None


def check_eos(tokenizer, ids: list[int], mask: list[bool]) -> None:
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    if tokenizer.eos_token_id not in trained:
        log.warning(
            "the first example's trained tokens do not contain EOS %r: the model may not learn to stop "
            "(check the chat template or pass --template)",
            tokenizer.eos_token,
        )


def run_sft(opts: TrainOptions, config, data) -> StageResult:
    from trl import SFTTrainer

    tokenizer, added = load_tokenizer(opts.model, opts.template, need_chat=True)
    assistant_only = bool(config.assistant_only_loss)
    if assistant_only:
        ensure_generation_markers(tokenizer)
    train = tokenize_conversations(data.train, tokenizer, config.max_length, assistant_only, opts.drop_long)
    if len(train.dataset) == 0:
        raise MedmillError(f"no training example fits --max_length {config.max_length}")
    evaluation = (
        tokenize_conversations(data.validation, tokenizer, config.max_length, assistant_only, opts.drop_long)
        if data.validation is not None
        else None
    )
    if opts.preview:
        show_example(tokenizer, train.example_ids, train.example_mask, "sft example")
        show_lengths(train.report, "sft token lengths (train)")
    check_eos(tokenizer, train.example_ids, train.example_mask)
    model = wrap_lora(load_causal_lm(opts.model, opts, tokenizer, added), opts, "CAUSAL_LM", new_tokens=added > 0)
    # The dataset is tokenized already with `assistant_masks`, which trl folds into the labels itself.
    config.assistant_only_loss = False
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train.dataset,
        eval_dataset=evaluation.dataset if evaluation else None,
        processing_class=tokenizer,
    )
    config.assistant_only_loss = assistant_only
    resumed, metrics = fit(trainer, opts, tokenizer)
    return StageResult("sft", opts.out, trainer.state.global_step, resumed, metrics, train.report, history(trainer, ("loss", "eval_loss")))
