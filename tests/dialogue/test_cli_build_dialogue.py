"""`medmill build-dialogue` end to end: samples and generated corpora in one run, the dataset-dir contract
(validate, datasets.load_dataset, export, train sft), splits that never cut a conversation, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.schemas.dataset_dir import split_files
from medmill.schemas.errors import MedmillError
from tests.dialogue import corpora

if not any(c.name == "build-dialogue" for c in medmill.cli.app.registered_commands):
    medmill.cli._register()


def run(*args):
    return CliRunner().invoke(medmill.cli.app, [str(a) for a in args])


def build(*args):
    result = run("build-dialogue", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def rows(out: Path) -> dict[str, list[dict]]:
    return {s: [r for f in fs for r in pq.read_table(f).to_pylist()] for s, fs in split_files(out).items()}


SAMPLES = [
    "toyhom_IM_sample.csv", "toyhom_IM_txt_sample.txt", "chatdoctor_genmedgpt5k_sample.json",
    "huatuo_llama_data_sample.json", "huatuo_liver_cancer_sample.json", "medicalgpt_medical_sft_sample.jsonl",
    "medicalgpt_reward_medical_sample.jsonl",
]


@pytest.fixture(scope="module")
def samples_out(tmp_path_factory) -> Path:
    from tests.conftest import SHARED_SAMPLES

    if not SHARED_SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present")
    out = tmp_path_factory.mktemp("dlg") / "out"
    build(*[SHARED_SAMPLES / s for s in SAMPLES], "--out", out, "--val-size", "0.2", "--department-prompt")
    return out


@pytest.mark.slow  # builds the real samples once (card plots included) and loads them with datasets
def test_samples_build_passes_validate_and_loads(samples_out: Path):
    assert run("validate", samples_out).exit_code == 0
    from datasets import load_dataset

    ds = load_dataset(str(samples_out))
    total = sum(len(ds[s]) for s in ds)
    manifest = json.loads((samples_out / "manifest.json").read_text(encoding="utf-8"))
    assert total == manifest["records_total"] > 250
    per_file = {r["file"]: r for r in manifest["stats"]["inputs"]}
    assert per_file["toyhom_IM_sample.csv"]["format"] == "toyhom"
    assert per_file["toyhom_IM_sample.csv"]["encoding"] == "gb18030"
    for r in per_file.values():  # every row is kept or rejected with a reason
        assert r["records_kept"] + sum(r["rejected"].values()) == r["rows_read"], r
    card = (samples_out / "README.md").read_text(encoding="utf-8")
    assert "| `toyhom_IM_sample.csv` | toyhom | gb18030 | 55 |" in card
    for row in (x for split in rows(samples_out).values() for x in split):
        texts = [m["content"] for m in row["messages"]]
        assert not any("<user>" in t or "<bot>" in t for t in texts)
        assert not any(t.endswith("感谢您的进行咨询，期望我的解释对你有所帮助。") for t in texts)
        if row["source"]["file"] == "toyhom_IM_sample.csv":
            assert row["messages"][0]["role"] == "system" and "医生" in row["messages"][0]["content"]


@pytest.mark.slow  # builds the real samples once (card plots included) and loads them with datasets
def test_samples_build_exports(samples_out: Path, tmp_path: Path):
    for fmt in ("sharegpt", "openai", "alpaca"):
        target = tmp_path / f"{fmt}.jsonl"
        result = run("export", samples_out, "--format", fmt, "--out", target)
        assert result.exit_code == 0, result.output
        lines = target.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(rows(samples_out)["train"])


def test_prefix_copies_merged_and_never_cross_splits(tmp_path: Path):
    src = tmp_path / "liver_cancer.json"
    n = corpora.write_bentsao(src, 300, max_turns=4)
    out = tmp_path / "out"
    build(src, "--out", out, "--val-size", "0.3", "--test-size", "0.2", "--no-dedup")
    got = rows(out)
    records = [r for split in got.values() for r in split]
    assert len(records) == 300  # one record per conversation, from n rows
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["rejects_by_reason"] == {"merge/prefix_copy": n - 300}
    first_turns = {}
    for split, rs in got.items():
        for r in rs:
            key = r["messages"][0]["content"]
            assert first_turns.setdefault(key, split) == split
    assert {"train", "validation", "test"} <= set(got)
    # every record holds the whole conversation: the longest form of what write_bentsao wrote
    for r in records:
        i = int(r["messages"][0]["content"].split("研究")[1].split("的")[0])
        assert len(r["messages"]) == len(corpora.bentsao_conversation(i, len(r["messages"]) // 2))


def test_generated_corpora_in_one_run_with_folder(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    wrote = corpora.write_toyhom_csv(corpus / "内科.csv", 1200, ragged_every=200)
    corpora.write_genmedgpt(corpus / "chatdoctor5k.json", 200)
    out = tmp_path / "out"
    result = build(corpus, "--out", out, "--no-dedup")
    assert "ragged_row" in result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    per_file = {r["file"]: r for r in manifest["stats"]["inputs"]}
    toyhom = per_file["corpus/内科.csv"]
    assert toyhom["rejected"]["ragged_row"] == wrote["ragged"] == 6
    assert toyhom["rows_read"] == 1200 and toyhom["records_kept"] == 1200 - 6
    chat = per_file["corpus/chatdoctor5k.json"]
    assert chat["format"] == "alpaca" and chat["language"] == "en" and chat["records_kept"] == 200
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    ragged = [r for r in rejects if r["reason"] == "ragged_row"]
    assert all(r["source"]["file"] == "corpus/内科.csv" and r["source"]["line"] > 1 for r in ragged)
    recs = [r for split in rows(out).values() for r in split]
    en = [r for r in recs if r["source"]["file"] == "corpus/chatdoctor5k.json"]
    assert all(r["messages"][0]["role"] == "system" for r in en)
    assert not any(r["messages"][-1]["content"].startswith("Hi") or r["messages"][-1]["content"].endswith("Take care.") for r in en)


def test_limit_reads_only_the_first_rows(tmp_path: Path):
    src = tmp_path / "t.csv"
    corpora.write_toyhom_csv(src, 300)
    out = tmp_path / "out"
    build(src, "--out", out, "--limit", "40", "--no-dedup")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stats"]["inputs"][0]["rows_read"] == 40
    assert manifest["records_total"] + manifest["rejects_total"] == 40


@pytest.mark.slow  # builds the real samples once (card plots included) and loads them with datasets
def test_own_dataset_dir_is_an_input(samples_out: Path, tmp_path: Path):
    out = tmp_path / "again"
    build(samples_out, "--out", out, "--system-prompt", "你是一名医生。")
    got = [r for split in rows(out).values() for r in split]
    before = sum(len(v) for v in rows(samples_out).values())
    assert len(got) == before
    assert all(r["messages"][0] == {"role": "system", "content": "你是一名医生。"} for r in got)


@pytest.mark.slow  # spawns an interpreter
def test_unknown_shape_is_a_one_line_error(tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("just some text\nnothing else\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "medmill.cli", "build-dialogue", str(notes), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "notes.txt" in proc.stderr and "expected a Toyhom CSV" in proc.stderr


def test_bad_options_and_inputs_are_refused(tmp_path: Path, samples_dir: Path):
    toyhom = samples_dir / "toyhom_IM_sample.csv"
    for args, message in [
        (("--system-prompt", "x", "--department-prompt"), "not both"),
        (("--format", "sharegpt"), "expects JSON"),
        (("--min-chars", "50", "--max-chars", "10"), "--min-chars 50 is above --max-chars 10"),
        (("--language", "fr"), "language"),
    ]:
        result = run("build-dialogue", toyhom, "--out", tmp_path / "o", *args)
        assert isinstance(result.exception, MedmillError) and message in str(result.exception), (args, result.exception)
    result = run("build-dialogue", tmp_path / "missing.csv", "--out", tmp_path / "o")
    assert isinstance(result.exception, MedmillError) and "missing.csv" in str(result.exception)


@pytest.mark.slow
def test_output_trains_with_medmill_train_sft(samples_out: Path, tmp_path: Path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tmp_path / "tiny"
        assert run("init-model", "--out", model, "--corpus", samples_out, "--size", "tiny").exit_code == 0
        result = run("train", "sft", "--model", model, "--data", samples_out, "--out", tmp_path / "sft",
                     "--max_steps", "4", "--per_device_train_batch_size", "4", "--max_length", "64",
                     "--dataloader_num_workers", "0", "--save_steps", "1000", "--logging_steps", "2")
        assert result.exit_code == 0, (result.output, result.exception)
        report = json.loads((tmp_path / "sft" / "medmill_train.json").read_text(encoding="utf-8"))
        assert report["global_step"] == 4
        assert report["lengths"]["examples"] == len(rows(samples_out)["train"])
    finally:
        torch.set_num_threads(threads)
