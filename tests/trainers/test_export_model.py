"""The CLI chain init-model -> train sft --lora -> export-model, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from medmill import cli
from medmill.schemas.errors import MedmillError

pytestmark = pytest.mark.slow  # trains and exports a tiny model


def _medmill(*args: str) -> SimpleNamespace:
    """Run a command in-process (fast); MedmillError is what cli.main() prints on one line with exit 2."""
    cli._register()
    result = CliRunner().invoke(cli.app, list(args))
    if isinstance(result.exception, MedmillError):
        return SimpleNamespace(returncode=2, stdout=result.output, stderr=f"error: {result.exception}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.output, stderr=result.output)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from tests.trainers.test_train_support import build_dirs

    root = tmp_path_factory.mktemp("chain")
    dirs = build_dirs(root / "data")
    init = _medmill("init-model", "--out", str(root / "tiny"), "--corpus", str(dirs["sft"]))
    assert init.returncode == 0, init.stderr
    train = _medmill(
        "train", "sft", "--model", str(root / "tiny"), "--data", str(dirs["sft"]), "--out", str(root / "sft"), "--lora",
        "--max_steps", "4", "--learning_rate", "1e-3", "--per_device_train_batch_size", "8", "--save_steps", "2",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    return root, dirs, train


def test_train_prints_masked_example_lengths_and_summary(chain):
    _, _, train = chain
    assert "sft example" in train.stdout and "⟦" in train.stdout  # the loss mask made visible
    assert "truncated" in train.stdout and "medmill train sft" in train.stdout


def test_export_merges_lora_into_a_standalone_model(chain):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _, _ = chain
    result = _medmill("export-model", "--model", str(root / "sft"), "--out", str(root / "merged"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "causal-lm" in result.stdout
    names = {p.name for p in (root / "merged").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "generation_config.json"} <= names
    assert "adapter_config.json" not in names
    model = AutoModelForCausalLM.from_pretrained(root / "merged")
    tokenizer = AutoTokenizer.from_pretrained(root / "merged")
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    # merged weights differ from the base: the adapter was really applied
    base = AutoModelForCausalLM.from_pretrained(root / "tiny")
    diffs = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values(), strict=True)]
    assert any(diffs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "nope_dir"], "no such dataset dir or file"),
        (["--qlora"], "--qlora needs a CUDA GPU"),
        (["--learning_rat", "1"], "did you mean learning_rate"),
        (["--template", "nope"], "unknown chat template"),
    ],
)
def test_bad_input_is_one_line_exit_2(chain, args, message):
    root, dirs, _ = chain
    base = ["train", "sft", "--model", str(root / "tiny"), "--out", str(root / "bad")]
    if "--data" not in args:
        base += ["--data", str(dirs["sft"])]
    result = _medmill(*base, *args, "--max_steps", "1")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr


def test_the_real_console_script_prints_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "medmill.cli", "train", "sft", "--model", "m", "--out", str(tmp_path), "--data", "nope_dir"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "nope_dir" in result.stderr


def test_export_bad_input_is_one_line_and_adapter_without_tokenizer_uses_the_base(chain, tmp_path):
    import json
    import shutil

    from transformers import AutoTokenizer

    root, _, _ = chain
    bad_dtype = _medmill("export-model", "--model", str(root / "sft"), "--out", str(tmp_path / "a"), "--dtype", "bogus")
    assert bad_dtype.returncode == 2 and "unknown --dtype 'bogus'" in bad_dtype.stderr
    moved = tmp_path / "moved"  # the adapter records a base that is no longer there
    shutil.copytree(root / "sft", moved, ignore=shutil.ignore_patterns("checkpoint-*"))
    cfg = json.loads((moved / "adapter_config.json").read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = str(tmp_path / "gone" / "tiny")
    (moved / "adapter_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    gone = _medmill("export-model", "--model", str(moved), "--out", str(tmp_path / "b"))
    assert gone.returncode == 2 and "pass --base PATH" in gone.stderr
    weights_only = tmp_path / "weights_only"  # config + weights, no tokenizer files
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(root / "tiny" / name, weights_only / name)
    no_tok = _medmill("export-model", "--model", str(weights_only), "--out", str(tmp_path / "c"))
    assert no_tok.returncode == 2 and "cannot load a tokenizer" in no_tok.stderr
    assert not (tmp_path / "c").exists()  # nothing half-written (transformers would make a one-token tokenizer)
    for p in moved.glob("tokenizer*"):
        p.unlink()
    (moved / "chat_template.jinja").unlink()
    ok = _medmill("export-model", "--model", str(moved), "--out", str(tmp_path / "d"), "--base", str(root / "tiny"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(AutoTokenizer.from_pretrained(tmp_path / "d")) == len(AutoTokenizer.from_pretrained(root / "tiny"))
