"""The train command's parser, importers, templates, recipes and multi-GPU configs (no training)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from medmill.schemas.errors import MedmillError
from medmill.trainers.data import DataSpec, load_training_data
from medmill.trainers.options import build_config, config_class, load_recipe, resolve_options
from medmill.trainers.templates import TEMPLATES, template_text

CPU = {"use_cpu": True, "bf16": False, "report_to": []}
RECIPES = resources.files("medmill.trainers").joinpath("recipes")
CONFIGS = resources.files("medmill.trainers").joinpath("configs")


@pytest.mark.slow  # imports trl/transformers to build training configs
def test_cli_extras_are_typed_and_override_the_recipe(tmp_path):
    cls = config_class("sft")
    recipe = {"learning_rate": 1e-3, "max_length": 128, "lora": True}
    config = build_config(cls, {**CPU, "output_dir": str(tmp_path)}, recipe, ["--max_length", "64", "--packing", "--num_train_epochs=2", "--neftune_noise_alpha", "5"])
    assert (config.learning_rate, config.max_length, config.packing, config.num_train_epochs) == (1e-3, 64, True, 2.0)
    assert config.neftune_noise_alpha == 5.0


@pytest.mark.slow  # imports trl/transformers to build training configs
def test_unknown_field_names_close_matches(tmp_path):
    with pytest.raises(MedmillError, match="did you mean learning_rate"):
        build_config(config_class("dpo"), CPU, {}, ["--learning_rat", "1"])
    with pytest.raises(MedmillError, match="in the recipe"):
        build_config(config_class("rm"), CPU, {"bta": 0.1}, [])
    with pytest.raises(MedmillError, match="invalid int"):
        build_config(config_class("sft"), CPU, {}, ["--max_length", "abc"])


@pytest.mark.slow  # imports trl/transformers to build training configs
def test_ppo_config_accepts_its_own_and_trainingarguments_fields(tmp_path):
    config = build_config(config_class("ppo"), CPU, {"kl_coef": 0.1}, ["--response_length", "8", "--learning_rate", "1e-5"])
    assert (config.kl_coef, config.response_length, config.learning_rate) == (0.1, 8, 1e-5)
    assert config_class("ppo", "grpo").__name__ == "GRPOConfig" and config_class("ppo", "rloo").__name__ == "RLOOConfig"


@pytest.mark.slow  # imports trl/transformers to build training configs
@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.iterdir() if p.name.endswith(".yaml")))
def test_every_shipped_recipe_builds_its_config(name, tmp_path):
    recipe = load_recipe(Path(str(RECIPES.joinpath(name))))
    stage = recipe.get("stage", "sft")
    opts = resolve_options({"model": "m", "out": str(tmp_path)}, {**recipe, "stage": stage})
    config = build_config(config_class(opts.stage, opts.algo), {**CPU, "output_dir": str(tmp_path)}, recipe, [])
    assert config.output_dir == str(tmp_path)


@pytest.mark.slow  # imports transformers/trl (seconds on a loaded machine)
def test_multi_gpu_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig

    for name in ("ds_zero2.json", "ds_zero3.json"):
        ds = json.loads(CONFIGS.joinpath(name).read_text(encoding="utf-8"))
        assert ds["zero_optimization"]["stage"] == int(name[7])
    for name in ("accelerate_fsdp.yaml", "accelerate_zero3.yaml"):
        config = ClusterConfig.from_yaml_file(str(CONFIGS.joinpath(name)))
        assert config.distributed_type in ("FSDP", "DEEPSPEED")
        assert config.fsdp_config or config.deepspeed_config["deepspeed_config_file"] == "ds_zero3.json"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_named_templates_mark_answers_and_close_them(name):
    from jinja2 import Environment
    from jinja2.ext import Extension, nodes

    class Generation(Extension):  # stands in for transformers' {% generation %}: wraps content in ⟦ ⟧
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            return "⟦" + caller() + "⟧"

    text = template_text(name)
    env = Environment(extensions=[Generation])
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]  # fmt: skip
    rendered = env.from_string(text).render(messages=messages, eos_token="</s>", bos_token="<s>", add_generation_prompt=False)
    eos = TEMPLATES[name].end_of_turn or "</s>"
    marked = [part.split("⟧")[0] for part in rendered.split("⟦")[1:]]
    assert len(marked) == 2
    for i, part in enumerate(marked, start=1):
        assert part.strip().startswith(f"A{i}") and part.strip().endswith(eos) and "Q" not in part


@pytest.mark.slow  # trains a tokenizer
def test_template_option_installs_tokens_on_a_tokenizer(tmp_path):
    from medmill.trainers.init_model import train_tokenizer
    from medmill.trainers.templates import apply_template

    tokenizer = train_tokenizer(["头痛 发热 咳嗽"] * 5, 300)
    added = apply_template(tokenizer, "llama3")
    assert added == 3 and tokenizer.eos_token == "<|eot_id|>"
    assert len(tokenizer("<|start_header_id|><|eot_id|>", add_special_tokens=False)["input_ids"]) == 2
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "发热"}], return_dict=True, return_assistant_tokens_mask=True
    )
    trained = [i for i, m in zip(ids["input_ids"], ids["assistant_masks"], strict=True) if m]
    assert trained[-1] == tokenizer.convert_tokens_to_ids("<|eot_id|>")
    with pytest.raises(MedmillError, match="unknown chat template"):
        apply_template(tokenizer, "nope")


def test_importers_read_the_public_formats(samples_dir):
    cases = [
        ("medicalgpt_medical_sft_sample.jsonl", "sft"),  # sharegpt conversations
        ("huatuo_llama_data_sample.json", "sft"),  # alpaca in JSON Lines named .json
        ("medicalgpt_reward_medical_sample.jsonl", "preference"),  # question/response_chosen/response_rejected
        ("medicalgpt_dpo_zh_sample.jsonl", "preference"),  # conversations + chosen/rejected strings
        ("medicalgpt_pretrain_fever_textbook_sample.txt", "pretrain"),
        ("medicalgpt_grpo_sample.jsonl", "prompt"),
    ]
    for name, kind in cases:
        data = load_training_data([DataSpec(samples_dir / name)], kind)
        assert len(data.train) >= 15, name
        assert not data.problems, (name, data.problems)
    row = load_training_data([DataSpec(samples_dir / "medicalgpt_dpo_zh_sample.jsonl")], "preference").train[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"


def test_bad_rows_are_named_by_file_and_line(tmp_path):
    f = tmp_path / "mixed.jsonl"
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "{broken", {"instruction": "x"},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]}]  # fmt: skip
    f.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows), encoding="utf-8")
    data = load_training_data([DataSpec(f)], "sft")
    assert len(data.train) == 1 and data.sources[0].bad == 3
    assert [p.split(":")[1] for p in data.problems] == ["2", "3", "4"]


def test_weights_and_group_aware_validation(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(100)), encoding="utf-8")
    twice = load_training_data([DataSpec.parse(f"{f}=2")], "sft", val_size=0.2)
    half = load_training_data([DataSpec.parse(f"{f}=0.5")], "sft", val_size=0.2)
    assert len(twice.validation) == len(half.validation) and 5 < len(twice.validation) < 35
    assert len(twice.train) == 2 * (100 - len(twice.validation))
    assert len(half.train) == round(0.5 * (100 - len(half.validation)))
    with pytest.raises(MedmillError, match="weight"):
        DataSpec.parse(f"{f}=x")


def test_wrong_kind_of_dir_is_a_clear_error(tmp_path):
    from tests.trainers.test_train_support import build_dirs

    dirs = build_dirs(tmp_path)
    with pytest.raises(MedmillError, match="holds sft records; this stage needs preference"):
        load_training_data([DataSpec(dirs["sft"])], "preference")
    prompts = load_training_data([DataSpec(dirs["sft"])], "prompt")  # RL prompts come from sft dirs too
    assert prompts.train[0]["prompt"][-1]["role"] == "user"


def test_dirs_and_files_mix_into_one_dataset(tmp_path):
    from tests.trainers.test_train_support import build_dirs

    dirs = build_dirs(tmp_path)
    f = tmp_path / "extra.jsonl"
    f.write_text("\n".join(json.dumps({"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]}) for i in range(10)), encoding="utf-8")
    data = load_training_data([DataSpec(dirs["sft"]), DataSpec.parse(f"{f}=3")], "sft", val_size=0.0)
    assert len(data.train) == 36 + 30 and len(data.validation) == 4  # the dir's own validation split
    assert data.train.column_names == ["messages"]
    assert sum(1 for m in data.train["messages"] if m[0]["content"].startswith("q")) == 30


def test_resume_from_a_run_dir_instead_of_a_checkpoint_is_a_clear_error(tmp_path):
    from medmill.trainers.modeling import resume_point
    from medmill.trainers.options import TrainOptions

    run = tmp_path / "run"
    (run / "checkpoint-3").mkdir(parents=True)
    (run / "checkpoint-3" / "trainer_state.json").write_text("{}", encoding="utf-8")
    with pytest.raises(MedmillError, match=r"not a checkpoint dir.*did you mean .*checkpoint-3"):
        resume_point(TrainOptions(out=str(tmp_path / "new"), resume_from=str(run)))
    with pytest.raises(MedmillError, match="no such checkpoint dir"):
        resume_point(TrainOptions(out=str(tmp_path / "new"), resume_from=str(tmp_path / "missing")))
    assert resume_point(TrainOptions(out=str(tmp_path / "new"), resume_from=str(run / "checkpoint-3"))) == str(run / "checkpoint-3")


def test_prompt_only_rows_feed_the_rl_stage(tmp_path):
    f = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": [{"role": "system", "content": "你是医生"}, {"role": "user", "content": "头痛怎么办"}]},  # trl prompt-only
        {"prompt": "发热怎么办"},
        {"messages": [{"role": "user", "content": "咳嗽"}]},  # a conversation waiting for its answer
        {"conversations": [{"from": "human", "value": "胸闷"}], "system": "简短回答"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},  # answer dropped
        {"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},  # not a prompt
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    data = load_training_data([DataSpec(f)], "prompt")
    assert len(data.train) == 5 and data.sources[0].bad == 1 and data.problems[0].startswith(f"{f}:6:")
    prompts = sorted(data.train["prompt"], key=len)
    assert all(p[-1]["role"] == "user" for p in prompts)
    assert [m["role"] for m in prompts[-1]] == ["system", "user"]


def test_a_plain_folder_and_fingerprinted_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "jsonl_files"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}), encoding="utf-8")
    with pytest.raises(MedmillError, match="a folder but not a dataset dir"):
        load_training_data([DataSpec(folder)], "sft")
    hub = tmp_path / "hub" / "data"  # a dir pushed by an older `datasets` (shard names end in a fingerprint)
    hub.mkdir(parents=True)
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    for split, n in (("train", 6), ("validation", 2)):
        pq.write_table(pa.Table.from_pylist([{"messages": msgs}] * n), hub / f"{split}-00000-of-00001-3f2a9c1d.parquet")
    data = load_training_data([DataSpec(hub.parent)], "sft")
    assert (len(data.train), len(data.validation)) == (6, 2)


@pytest.mark.slow  # imports transformers/trl (seconds on a loaded machine)
def test_a_model_dir_without_tokenizer_files_is_refused(tmp_path):
    from medmill.trainers.modeling import load_tokenizer

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}), encoding="utf-8")
    with pytest.raises(MedmillError, match="cannot load a tokenizer .* holds none of tokenizer.json"):
        load_tokenizer(str(tmp_path), "chatml", need_chat=True)  # not an empty one-token tokenizer


@pytest.mark.slow  # imports transformers/trl (seconds on a loaded machine)
def test_recipe_values_are_typed_like_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1e-3\nmax_steps: 2.0\nsave_steps: 5\nbf16: false\nval_size: 1e-1\nlora: true\n", encoding="utf-8")
    loaded = load_recipe(recipe)  # YAML 1.1 reads 1e-3 as the string '1e-3'
    config = build_config(config_class("sft"), CPU, loaded, [])
    assert (config.learning_rate, config.max_steps) == (1e-3, 2) and isinstance(config.learning_rate, float)
    opts = resolve_options({"stage": "sft", "model": "m", "out": str(tmp_path / "o")}, loaded)
    assert opts.val_size == 0.1 and opts.lora is True
    with pytest.raises(MedmillError, match=r"bad value \[1\] for max_steps in the recipe .*an integer"):
        build_config(config_class("sft"), CPU, {"max_steps": [1]}, [])
    with pytest.raises(MedmillError, match="bad value 'maybe' for bf16 .*true or false"):
        build_config(config_class("dpo"), CPU, {"bf16": "maybe"}, [])
    with pytest.raises(MedmillError, match="bad value 'yes please' for lora"):
        resolve_options({"stage": "sft", "model": "m", "out": "o"}, {"lora": "yes please"})


def test_a_file_of_the_wrong_kind_says_which_stage_it_is_for(tmp_path):
    pref = tmp_path / "pref.jsonl"
    pref.write_text(json.dumps({"conversations": [{"from": "human", "value": "q"}], "chosen": "a", "rejected": "b"}), encoding="utf-8")
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}), encoding="utf-8")
    with pytest.raises(MedmillError, match="pref.jsonl:1: a preference row .*train rm or dpo"):
        load_training_data([DataSpec(pref)], "sft")
    with pytest.raises(MedmillError, match="sft.jsonl:1: no chosen/rejected answers: an sft row"):
        load_training_data([DataSpec(sft)], "preference")
    assert len(load_training_data([DataSpec(pref)], "prompt").train) == 1  # still a prompt for RL


def test_resume_with_a_different_lora_choice_is_a_clear_error(tmp_path):
    from medmill.trainers.modeling import resume_point
    from medmill.trainers.options import TrainOptions

    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}", encoding="utf-8")
    with pytest.raises(MedmillError, match="holds full weights; drop --lora"):
        resume_point(TrainOptions(out=str(tmp_path), lora=True))
    assert resume_point(TrainOptions(out=str(tmp_path))) == str(ckpt)
    (ckpt / "adapter_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(MedmillError, match="holds a LoRA adapter; add --lora"):
        resume_point(TrainOptions(out=str(tmp_path)))
    assert resume_point(TrainOptions(out=str(tmp_path), qlora=True)) == str(ckpt)
    assert resume_point(TrainOptions(out=str(tmp_path), no_resume=True)) is None


def test_sizes_out_of_range_are_refused_before_any_work():
    base = {"stage": "pt", "model": "m", "out": "o"}
    with pytest.raises(MedmillError, match="--block-size must be at least 1"):
        resolve_options({**base, "block_size": 0}, {})
    with pytest.raises(MedmillError, match="--lora-r must be at least 1"):
        resolve_options(base, {"lora_r": 0})
    with pytest.raises(MedmillError, match=r"--lora-dropout must be in \[0, 1\)"):
        resolve_options({**base, "lora_dropout": 1.5}, {})


def test_resume_refuses_a_checkpoint_of_another_stage(tmp_path):
    from medmill.trainers.modeling import resume_point
    from medmill.trainers.options import TrainOptions

    (tmp_path / "checkpoint-30").mkdir()
    (tmp_path / "checkpoint-30" / "trainer_state.json").write_text("{}", encoding="utf-8")
    (tmp_path / "medmill_train.json").write_text(json.dumps({"stage": "sft"}), encoding="utf-8")
    with pytest.raises(MedmillError, match="checkpoint of a `sft` run, not `dpo`"):
        resume_point(TrainOptions(stage="dpo", out=str(tmp_path)))  # would "finish" dpo at once on sft weights
    assert resume_point(TrainOptions(stage="sft", out=str(tmp_path))).endswith("checkpoint-30")
    assert resume_point(TrainOptions(stage="dpo", out=str(tmp_path), no_resume=True)) is None
    (tmp_path / "medmill_train.json").write_text(json.dumps({"stage": "ppo/grpo"}), encoding="utf-8")
    assert resume_point(TrainOptions(stage="ppo", algo="grpo", out=str(tmp_path))).endswith("checkpoint-30")
    with pytest.raises(MedmillError, match="not `ppo`"):
        resume_point(TrainOptions(stage="ppo", out=str(tmp_path)))


def test_a_missing_stage_is_named_as_missing():
    with pytest.raises(MedmillError, match=r"no stage given: medmill train pt\|sft"):
        resolve_options({"model": "m", "out": "o"}, {})


@pytest.mark.slow  # imports transformers/trl (seconds on a loaded machine)
def test_hub_token_never_lands_in_the_saved_training_arguments(monkeypatch):
    import pickle

    from transformers import TrainingArguments

    from medmill.trainers.options import build_config

    monkeypatch.setenv("HF_TOKEN", "before")  # registers HF_TOKEN so monkeypatch restores it afterwards
    args = build_config(TrainingArguments, {"output_dir": "x", "use_cpu": True, "report_to": []}, {}, ["--hub_token", "hf_secret_123"])
    assert args.hub_token is None
    assert b"hf_secret_123" not in pickle.dumps(args)  # what Trainer writes as training_args.bin
    import os

    assert os.environ["HF_TOKEN"] == "hf_secret_123"
