"""End-to-end trainer tests on CPU with a tiny init-model model and dataset dirs medmill wrote."""

from __future__ import annotations

import json
import math

import pytest

from medmill.trainers.options import TrainOptions
from medmill.trainers.run import run_training
from tests.trainers.test_train_support import QA, build_dirs, fast_args

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # every test trains a tiny model


@pytest.fixture(scope="session")
def dirs(tmp_path_factory):
    return build_dirs(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, dirs):
    from medmill.trainers.init_model import init_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    init_model(out, corpus=[dirs["sft"], dirs["pref"], dirs["pt"]], size="tiny")
    return out


def sft_run(tiny, dirs, out, steps: int, lr: float):
    opts = TrainOptions(stage="sft", model=str(tiny), data=[str(dirs["sft"])], out=str(out), preview=False)
    return run_training(opts, {}, fast_args(steps, lr=lr) + ["--max_length", "64", "--eval_steps", "10"])


def test_sft_loss_falls_and_saves_template(tiny, dirs, tmp_path):
    out = tmp_path / "sft"
    result = sft_run(tiny, dirs, out, 30, 5e-3)
    losses = result.history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    assert result.history["eval_loss"][-1] < result.history["eval_loss"][0]
    assert "generation" in (out / "chat_template.jinja").read_text(encoding="utf-8")
    info = json.loads((out / "medmill_train.json").read_text(encoding="utf-8"))
    assert info["global_step"] == 30 and info["lengths"]["examples"] == 36


def test_sft_labels_cover_only_assistant_tokens(tiny, dirs, tmp_path):
    """The labels trl trains on are exactly the answer tokens plus the closing <|im_end|>."""
    from trl import SFTConfig, SFTTrainer

    from medmill.trainers.data import DataSpec, load_training_data
    from medmill.trainers.modeling import load_causal_lm, load_tokenizer
    from medmill.trainers.tokenize import tokenize_conversations

    opts = TrainOptions(stage="sft", model=str(tiny), out=str(tmp_path))
    tokenizer, _ = load_tokenizer(str(tiny), None, need_chat=True)
    data = load_training_data([DataSpec(dirs["sft"])], "sft")
    tokenized = tokenize_conversations(data.train, tokenizer, 64, assistant_only=True, drop_long=False)
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], max_length=64)
    trainer = SFTTrainer(
        model=load_causal_lm(str(tiny), opts, tokenizer), args=config, train_dataset=tokenized.dataset, processing_class=tokenizer
    )
    answers = {a for _, a in QA}
    eos = tokenizer.eos_token_id
    for row in trainer.train_dataset:
        trained = [t for t in row["labels"] if t != -100]
        assert trained[-1] == eos
        assert tokenizer.decode(trained[:-1]) in answers
        assert trained[:-1] == tokenizer(tokenizer.decode(trained[:-1]), add_special_tokens=False)["input_ids"]
        assert sum(t != -100 for t in row["labels"]) < len(row["input_ids"]) / 2  # prompts are masked


def test_pt_loss_falls_and_reports_perplexity(tiny, dirs, tmp_path):
    opts = TrainOptions(stage="pt", model=str(tiny), data=[str(dirs["pt"])], out=str(tmp_path / "pt"), block_size=32, preview=False)
    result = run_training(opts, {}, fast_args(30))
    assert result.history["loss"][-1] < 0.7 * result.history["loss"][0]
    assert math.isfinite(result.metrics["eval_perplexity"]) and result.metrics["eval_perplexity"] > 1
    assert result.metrics["blocks"] > 10


def test_rm_accuracy_and_export_reloads(tiny, dirs, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from medmill.trainers.export import export_model

    out = tmp_path / "rm"
    opts = TrainOptions(stage="rm", model=str(tiny), data=[str(dirs["pref"])], out=str(out), lora=True, preview=False)
    result = run_training(opts, {}, fast_args(30, lr=5e-3))
    assert result.metrics["eval_accuracy"] >= 0.9
    report = export_model(out, tmp_path / "rm_merged")
    assert report.kind == "reward-model" and report.merged_adapter
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm_merged")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "rm_merged")
    prompt = [{"role": "user", "content": "头痛怎么办？1"}]
    scores = []
    for answer in ("多休息，必要时就医。", "不知道，别问我。"):
        ids = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], return_tensors="pt", return_dict=True)
        with torch.no_grad():
            scores.append(model(**ids).logits[0, 0].item())
    assert scores[0] > scores[1]


def test_dpo_reward_margin_grows(tiny, dirs, tmp_path):
    opts = TrainOptions(stage="dpo", model=str(tiny), data=[str(dirs["pref"])], out=str(tmp_path / "dpo"), preview=False)
    result = run_training(opts, {}, fast_args(20, lr=2e-3))
    margins = result.history["rewards/margins"]
    assert margins[-1] > margins[0] and margins[-1] > 0
    assert result.metrics["eval_rewards/accuracies"] >= 0.9


def test_ppo_raises_rule_reward_with_finite_kl(tiny, dirs, tmp_path):
    out = tmp_path / "sft"
    sft_run(tiny, dirs, out, 60, 5e-3)  # PPO starts from an SFT model, as in the real pipeline
    opts = TrainOptions(
        stage="ppo", model=str(out), data=[str(dirs["pref"])], out=str(tmp_path / "ppo"), reward_rules=["target:多=5"], preview=False
    )
    args = fast_args(24, lr=2e-3) + ["--response_length", "12", "--missing_eos_penalty", "0"]
    result = run_training(opts, {}, args)
    # weight 5 lets the rule outweigh the KL penalty; seeds 42, 7 and 1 all went ~0.4 -> ~1.5 here
    target = result.history["rule/target:多=5"]
    first, last = sum(target[:5]) / 5, sum(target[-5:]) / 5
    assert last > 2 * first and last > first + 0.4
    assert all(math.isfinite(k) for k in result.history["kl"])
    for key in ("entropy", "response_length", "clip_fraction", "value_loss", "kl_coef"):
        assert key in result.history
    assert (tmp_path / "ppo" / "critic" / "config.json").exists()


def test_sft_resume_continues_from_saved_step(tiny, dirs, tmp_path):
    out = tmp_path / "resume"
    opts = TrainOptions(stage="sft", model=str(tiny), data=[str(dirs["sft"])], out=str(out), lora=True, preview=False)
    first = run_training(opts, {}, fast_args(4, save=2))
    assert first.global_step == 4 and (out / "checkpoint-4").is_dir()
    second = run_training(opts, {}, fast_args(6, save=2))
    assert second.resumed_from is not None and second.resumed_from.endswith("checkpoint-4")
    assert second.global_step == 6
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 6 and "chat_template.jinja" in {p.name for p in (out / "checkpoint-6").iterdir()}


def test_ppo_resume_continues_from_saved_step(tiny, dirs, tmp_path):
    out = tmp_path / "ppo_resume"
    opts = TrainOptions(stage="ppo", model=str(tiny), data=[str(dirs["sft"])], out=str(out), reward_rules=["eos=1"], lora=True, preview=False)
    args = ["--response_length", "4", "--per_device_train_batch_size", "4", "--logging_steps", "1"]
    first = run_training(opts, {}, args + ["--max_steps", "2", "--save_steps", "1"])
    assert first.global_step == 2
    second = run_training(opts, {}, args + ["--max_steps", "3", "--save_steps", "1"])
    assert second.resumed_from.endswith("checkpoint-2") and second.global_step == 3
    assert len(second.history["kl"]) == 3  # history carried over, not restarted



def test_grpo_runs_with_reward_model_and_rules(tiny, dirs, tmp_path):
    opts = TrainOptions(
        stage="ppo", algo="grpo", model=str(tiny), data=[str(dirs["pref"])], out=str(tmp_path / "grpo"),
        reward_rules=["length:4=1"], preview=False,
    )  # fmt: skip
    args = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8", "--logging_steps", "1"]
    result = run_training(opts, {}, args)
    assert result.global_step == 2 and "reward" in result.history
    info = json.loads((tmp_path / "grpo" / "medmill_train.json").read_text(encoding="utf-8"))
    assert info["config"]["beta"] == 0.04


def test_template_flag_adds_tokens_trains_them_under_lora_and_exports(tiny, dirs, tmp_path):
    """A base model without a chat template: --template llama3 adds its control tokens, resizes the
    embeddings, trains them with the adapter, and export-model reproduces the same model."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medmill.trainers.export import export_model

    base = tmp_path / "base"
    shutil.copytree(tiny, base)
    (base / "chat_template.jinja").unlink()
    opts = TrainOptions(stage="sft", model=str(base), data=[str(dirs["sft"])], out=str(tmp_path / "run"), template="llama3", lora=True, preview=False)
    result = run_training(opts, {}, fast_args(4, save=2))
    assert result.global_step == 4
    export_model(tmp_path / "run", tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert tokenizer.eos_token == "<|eot_id|>" and model.generation_config.eos_token_id == eot
    original = AutoModelForCausalLM.from_pretrained(base).get_input_embeddings().weight
    assert model.config.vocab_size == len(tokenizer) == original.shape[0] + 3
    assert not torch.equal(model.get_input_embeddings().weight[: original.shape[0]], original)  # embeddings trained


def test_length_limits_are_counted_on_tokens(tiny, tmp_path):
    from datasets import Dataset

    from medmill.trainers.modeling import load_tokenizer
    from medmill.trainers.tokenize import tokenize_conversations

    tokenizer, _ = load_tokenizer(str(tiny), None, need_chat=True)
    rows = [
        [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "多休息。"}],  # fits
        [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "多休息，" * 40}],  # answer cut
        [{"role": "user", "content": "发热" * 60}, {"role": "assistant", "content": "退热。"}],  # answer cut away
    ]
    lengths = [len(tokenizer.apply_chat_template(r, return_dict=True)["input_ids"]) for r in rows]
    limit = lengths[0] + 4
    assert lengths[1] > limit and lengths[2] > limit
    kept = tokenize_conversations(Dataset.from_dict({"messages": rows}), tokenizer, limit, True, drop_long=False)
    assert (kept.report.truncated, kept.report.dropped, len(kept.dataset)) == (1, 1, 2)
    assert kept.report.max == max(lengths)
    strict = tokenize_conversations(Dataset.from_dict({"messages": rows}), tokenizer, limit, True, drop_long=True)
    assert (strict.report.truncated, strict.report.dropped, len(strict.dataset)) == (0, 2, 1)


@pytest.mark.parametrize("stage", ["rm", "dpo"])
def test_pair_stages_refuse_when_drop_long_leaves_nothing(tiny, dirs, tmp_path, stage):
    from medmill.schemas.errors import MedmillError

    opts = TrainOptions(stage=stage, model=str(tiny), data=[str(dirs["pref"])], out=str(tmp_path / stage), drop_long=True, preview=False)
    with pytest.raises(MedmillError, match="no preference pair fits --max_length 8"):
        run_training(opts, {}, ["--max_length", "8", "--max_steps", "1"])
