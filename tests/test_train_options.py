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


def test_cli_extras_are_typed_and_override_the_recipe(tmp_path):
    cls = config_class("sft")
    recipe = {"learning_rate": 1e-3, "max_length": 128, "lora": True}
    config = build_config(cls, {**CPU, "output_dir": str(tmp_path)}, recipe, ["--max_length", "64", "--packing", "--num_train_epochs=2", "--neftune_noise_alpha", "5"])
    assert (config.learning_rate, config.max_length, config.packing, config.num_train_epochs) == (1e-3, 64, True, 2.0)
    assert config.neftune_noise_alpha == 5.0


def test_unknown_field_names_close_matches(tmp_path):
    with pytest.raises(MedmillError, match="did you mean learning_rate"):
        build_config(config_class("dpo"), CPU, {}, ["--learning_rat", "1"])
    with pytest.raises(MedmillError, match="in the recipe"):
        build_config(config_class("rm"), CPU, {"bta": 0.1}, [])
    with pytest.raises(MedmillError, match="invalid int"):
        build_config(config_class("sft"), CPU, {}, ["--max_length", "abc"])


def test_ppo_config_accepts_its_own_and_trainingarguments_fields(tmp_path):
    config = build_config(config_class("ppo"), CPU, {"kl_coef": 0.1}, ["--response_length", "8", "--learning_rate", "1e-5"])
    assert (config.kl_coef, config.response_length, config.learning_rate) == (0.1, 8, 1e-5)
    assert config_class("ppo", "grpo").__name__ == "GRPOConfig" and config_class("ppo", "rloo").__name__ == "RLOOConfig"


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.iterdir() if p.name.endswith(".yaml")))
def test_every_shipped_recipe_builds_its_config(name, tmp_path):
    recipe = load_recipe(Path(str(RECIPES.joinpath(name))))
    stage = recipe.get("stage", "sft")
    opts = resolve_options({"model": "m", "out": str(tmp_path)}, {**recipe, "stage": stage})
    config = build_config(config_class(opts.stage, opts.algo), {**CPU, "output_dir": str(tmp_path)}, recipe, [])
    assert config.output_dir == str(tmp_path)


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
    from tests.test_train_support import build_dirs

    dirs = build_dirs(tmp_path)
    with pytest.raises(MedmillError, match="holds sft records; this stage needs preference"):
        load_training_data([DataSpec(dirs["sft"])], "preference")
    prompts = load_training_data([DataSpec(dirs["sft"])], "prompt")  # RL prompts come from sft dirs too
    assert prompts.train[0]["prompt"][-1]["role"] == "user"


def test_dirs_and_files_mix_into_one_dataset(tmp_path):
    from tests.test_train_support import build_dirs

    dirs = build_dirs(tmp_path)
    f = tmp_path / "extra.jsonl"
    f.write_text("\n".join(json.dumps({"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]}) for i in range(10)), encoding="utf-8")
    data = load_training_data([DataSpec(dirs["sft"]), DataSpec.parse(f"{f}=3")], "sft", val_size=0.0)
    assert len(data.train) == 36 + 30 and len(data.validation) == 4  # the dir's own validation split
    assert data.train.column_names == ["messages"]
    assert sum(1 for m in data.train["messages"] if m[0]["content"].startswith("q")) == 30
