"""Issue 12 (trainers and model commands): encodings, broken weights, bad option values, missing models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hardening_cli import cli, one_line_error

SENTENCES = ["高血压患者应低盐饮食", "糖尿病患者要控制血糖", "冠心病患者应戒烟限酒", "慢性胃炎要规律饮食"]


def _corpus(path: Path, encoding: str) -> Path:
    lines = [json.dumps({"text": s * 3}, ensure_ascii=False) for s in SENTENCES * 20]
    path.write_bytes("\n".join(lines).encode(encoding))
    return path


def test_corpus_texts_of_a_gbk_jsonl_file_are_decoded_like_the_builds(tmp_path):
    from medmill.builders.readers.textio import iter_corpus_texts
    from medmill.trainers.corpus import iter_texts

    texts = list(iter_texts([_corpus(tmp_path / "c.jsonl", "gb18030")], iter_corpus_texts))
    assert texts[:2] == [SENTENCES[0] * 3, SENTENCES[1] * 3] and len(texts) == 80


@pytest.mark.slow
def test_init_model_reads_a_gbk_corpus_like_the_builds(tmp_path, monkeypatch, capsys):
    from transformers import AutoTokenizer

    counts = {}
    for enc in ("utf-8", "gb18030"):
        corpus = _corpus(tmp_path / f"corpus_{enc}.jsonl", enc)
        code, output = cli(monkeypatch, capsys, "init-model", "--out", tmp_path / enc, "--corpus", corpus, "--vocab-size", "400")
        assert code == 0, output
        tok = AutoTokenizer.from_pretrained(tmp_path / enc)
        counts[enc] = len(tok(SENTENCES[0])["input_ids"])
    # before the fix the GBK corpus was decoded with replacement characters: many more tokens
    assert counts["gb18030"] == counts["utf-8"] <= 4


def test_trainers_default_text_reader_refuses_non_utf8_instead_of_replacing(tmp_path):
    from medmill.schemas.errors import MedmillError
    from medmill.trainers.corpus import iter_texts

    corpus = _corpus(tmp_path / "c.txt", "gb18030")
    with pytest.raises(MedmillError, match="not UTF-8"):
        list(iter_texts([corpus]))


# ---- item 14: truncated weights ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer qwen2 with a small trained tokenizer and a chat template (init-model's own code)."""
    from medmill.trainers.init_model import init_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    init_model(out, vocab_size=300)
    return out


def _truncated_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return dst


@pytest.mark.slow  # the tiny model fixture: torch + tokenizer training, ~20 s on a shared machine
def test_export_model_with_truncated_safetensors_is_a_one_line_error(tmp_path, monkeypatch, capsys, tiny_model):
    bad = _truncated_copy(tiny_model, tmp_path / "bad")
    line = one_line_error(*cli(monkeypatch, capsys, "export-model", "--model", bad, "--out", tmp_path / "out"))
    assert "corrupt or cut short" in line and str(bad) in line  # before: SafetensorError traceback


@pytest.mark.slow
def test_train_with_truncated_safetensors_is_a_one_line_error(tmp_path, monkeypatch, capsys, tiny_model):
    from tests.schemas.test_hardening_datasets import sft_dir

    bad = _truncated_copy(tiny_model, tmp_path / "bad")
    data = sft_dir(tmp_path / "ds")
    line = one_line_error(*cli(monkeypatch, capsys, "train", "sft", "--model", bad, "--data", data, "--out",
                               tmp_path / "run", "--max_steps", "1", "--no-preview"))
    assert "corrupt or cut short" in line


# ---- item 19: values trl would take but cannot mean -------------------------------------------


def test_value_checks_without_importing_trl():
    from types import SimpleNamespace

    from medmill.schemas.errors import MedmillError
    from medmill.trainers.options import _join_negative_values
    from medmill.trainers.value_checks import check_values

    with pytest.raises(MedmillError, match="--max_steps -5: must be a positive number of steps"):
        check_values(SimpleNamespace(max_steps=-5, learning_rate=1e-4))
    with pytest.raises(MedmillError, match="--learning_rate -0.0001"):
        check_values(SimpleNamespace(max_steps=-1, learning_rate=-1e-4))
    check_values(SimpleNamespace(max_steps=-1, learning_rate=2e-5, eval_steps=None, bf16=True))  # defaults pass
    assert _join_negative_values(["--learning_rate", "-1e-4", "--bf16"]) == ["--learning_rate=-1e-4", "--bf16"]


@pytest.mark.slow  # imports transformers' TrainingArguments (tens of seconds on a loaded machine)
@pytest.mark.parametrize(
    "args,message",
    [
        (["--max_steps", "-5"], "--max_steps -5: must be a positive number of steps"),
        (["--max_steps", "0"], "--max_steps 0"),
        (["--learning_rate", "-1e-4"], "--learning_rate -0.0001: must be greater than 0"),
        (["--per_device_train_batch_size", "0"], "must be greater than 0"),
        (["--seed", "-3"], "--seed -3"),
        (["--weight_decay", "-0.1"], "--weight_decay -0.1: must be 0 or more"),
    ],
)
def test_train_values_out_of_range_are_refused(tmp_path, monkeypatch, capsys, args, message):
    from tests.schemas.test_hardening_datasets import sft_dir

    (tmp_path / "m").mkdir()
    data = sft_dir(tmp_path / "ds")
    code, output = cli(monkeypatch, capsys, "train", "pt", "--model", tmp_path / "m", "--data", data,
                       "--out", tmp_path / "run", *args)
    assert message in one_line_error(code, output)  # before: -5 trained full epochs, 0 too


@pytest.mark.slow
def test_recipe_values_are_checked_too(tmp_path):
    from medmill.schemas.errors import MedmillError
    from medmill.trainers.options import build_config, config_class

    with pytest.raises(MedmillError, match="--max_steps -5"):
        build_config(config_class("pt"), {"output_dir": str(tmp_path), "report_to": []}, {"max_steps": -5}, [])
    config = build_config(config_class("pt"), {"output_dir": str(tmp_path), "report_to": []}, {"max_steps": -1}, [])
    assert config.max_steps == -1  # the "train by epochs" sentinel stays allowed


# ---- item 20: --model that is nowhere ----------------------------------------------------------


@pytest.mark.slow  # `train sft` imports trl's SFTConfig before the model check
def test_missing_relative_model_path_fails_at_once_saying_both(tmp_path, monkeypatch, capsys):
    from tests.schemas.test_hardening_datasets import sft_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    data = sft_dir(tmp_path / "ds")

    def no_hub(*_a, **_k):  # the check must not even ask the Hub for a path under an existing local dir
        raise AssertionError("asked the Hub")

    monkeypatch.setattr("huggingface_hub.HfApi.model_info", no_hub)
    line = one_line_error(*cli(monkeypatch, capsys, "train", "sft", "--model", "out/nope_model", "--data", data,
                               "--out", tmp_path / "run", "--max_steps", "1"))
    # before: ~90 s of Hub retries, then "couldn't connect to huggingface.co"
    assert "no such local directory" in line and "not a Hub repo id" in line and "nope_model" in line


def test_local_looking_missing_paths_are_named_without_the_hub(tmp_path, monkeypatch):
    from medmill.schemas.errors import MedmillError
    from medmill.trainers.model_source import check_model_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", lambda *a, **k: pytest.fail("asked the Hub"))
    for name in ("out/nope_model", "./nope", "a/b/c", str(tmp_path / "abs")):
        with pytest.raises(MedmillError, match="no such local directory .* not a Hub repo id"):
            check_model_source(name)


def test_hub_id_not_cached_and_hub_unreachable_says_both(tmp_path, monkeypatch):
    from medmill.schemas.errors import MedmillError
    from medmill.trainers.model_source import check_model_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    def unreachable(*_a, **_k):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.HfApi.model_info", unreachable)
    with pytest.raises(MedmillError, match=r"is not a local directory .* and the Hub .* cannot be reached"):
        check_model_source("someorg/nope_model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MedmillError, match="not in the Hugging Face cache"):
        check_model_source("someorg/nope_model")
    (tmp_path / "here").mkdir()
    check_model_source(str(tmp_path / "here"))  # a local dir passes
