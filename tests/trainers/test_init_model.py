"""`medmill init-model`: a tiny random model + tokenizer trained on a corpus, with a chat template."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medmill import cli

pytestmark = pytest.mark.slow  # trains tokenizers and builds models


@pytest.fixture(scope="module")
def app():
    cli._register()
    return cli.app


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_init_model_from_a_dataset_dir_and_a_text_file(app, tmp_path, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.trainers.test_train_support import build_dirs

    dirs = build_dirs(tmp_path / "data")
    text = tmp_path / "notes.txt"
    text.write_text("冠心病患者应戒烟限酒。\n胸痛持续不缓解应立即就医。\n", encoding="utf-8")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["init-model", "--out", str(out), "--corpus", str(dirs["sft"]), "--corpus", str(text), "--arch", arch, "--vocab-size", "600"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "medmill_init.json").read_text(encoding="utf-8"))
    assert info["arch"] == arch and info["corpus_texts"] == 36 * 2 + 4 * 2 + 2 and info["parameters"] < 200_000
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == arch and len(tokenizer) == model.config.vocab_size <= 600
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # The trained vocabulary knows the corpus: a corpus phrase takes far fewer tokens than its UTF-8 bytes.
    assert len(tokenizer("多休息，必要时就医。")["input_ids"]) < len("多休息，必要时就医。".encode()) / 2
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "头痛"}], add_generation_prompt=True, return_dict=True)
    out_ids = model.generate(**{k: __import__("torch").tensor([v]) for k, v in chat.items()}, max_new_tokens=3, do_sample=False)
    assert out_ids.shape[1] <= len(chat["input_ids"]) + 3


def test_init_model_rejects_unknown_arch(app, tmp_path):
    from medmill.schemas.errors import MedmillError

    result = CliRunner().invoke(app, ["init-model", "--out", str(tmp_path / "m"), "--arch", "gpt9"])
    assert isinstance(result.exception, MedmillError) and "unknown --arch" in str(result.exception)


def test_init_model_refuses_an_empty_corpus_and_a_zero_vocab(app, tmp_path):
    from medmill.schemas.errors import MedmillError

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    result = CliRunner().invoke(app, ["init-model", "--out", str(tmp_path / "m"), "--corpus", str(empty)])
    assert isinstance(result.exception, MedmillError) and "no text to train the tokenizer on" in str(result.exception)
    assert not (tmp_path / "m").exists()  # not a model silently trained on the built-in fallback sentences
    result = CliRunner().invoke(app, ["init-model", "--out", str(tmp_path / "m"), "--vocab-size", "0"])
    assert isinstance(result.exception, MedmillError) and "--vocab-size" in str(result.exception)
