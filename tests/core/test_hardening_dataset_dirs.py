"""Issue 12, items 4 and 5: builders never read dataset dirs found inside their input folders (their
own --out among them), and every reader of dataset dirs checks the shards against manifest.json."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.builders.core.run import run_build
from medmill.builders.core.validate import validate_dir
from medmill.builders.kg_qa.build import KGQABuilder, KGQAConfig
from medmill.builders.readers.documents import collect_files
from medmill.builders.readers.literature import read_literature
from medmill.schemas.dataset_dir import iter_rows, load_splits, split_files
from medmill.schemas.errors import MedmillError

if not any(c.name == "build-kg-qa" for c in medmill.cli.app.registered_commands):
    medmill.cli._register()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(*args):
    return CliRunner().invoke(medmill.cli.app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dirs") / "V"
    result = _run("build-kg-qa", EXAMPLES / "kg", "--out", d, "--val-size", "0.1")
    assert result.exception is None, result.output
    assert set(split_files(d)) == {"train", "validation"}
    return d


def _fake_dataset_dir(where: Path) -> Path:
    """A dataset dir as a build leaves it: card, manifest, rejects (JSON Lines a reader would take)."""
    (where / "data").mkdir(parents=True)
    (where / "README.md").write_text("# 数据集\n\n感冒是常见病。发热、咳嗽。\n" * 20, encoding="utf-8")
    (where / "manifest.json").write_text(json.dumps({"kind": "sft", "splits": {}}), encoding="utf-8")
    (where / "rejects.jsonl").write_text(
        json.dumps({"name": "假疾病", "symptom": ["咳嗽"], "title": "t", "conclusion": "c" * 40}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return where


# ---- item 4 -------------------------------------------------------------------------------------


def test_document_walk_skips_dataset_dirs_inside_an_input_folder(tmp_path):
    (tmp_path / "guide.txt").write_text("高血压的诊断。" * 10, encoding="utf-8")
    _fake_dataset_dir(tmp_path / "old_build")
    _fake_dataset_dir(tmp_path / "deeper" / "x")
    names = [name for _, name in collect_files([tmp_path])]
    assert names == [f"{tmp_path.name}/guide.txt"]


def test_literature_reader_skips_a_dataset_dir_inside_its_folder(tmp_path):
    shutil.copy(EXAMPLES / "literature" / "conclusions.jsonl", tmp_path / "conclusions.jsonl")
    alone = read_literature([tmp_path])
    _fake_dataset_dir(tmp_path / "out_lit")
    again = read_literature([tmp_path])
    assert [str(f) for f in again.files] == [str(f) for f in alone.files]
    assert len(again.rejects) == len(alone.rejects)


@pytest.mark.slow  # three builds of the example KG; the rule itself: kg_qa's test_output_dir_inside_the_input_dir_is_not_read_back (fast)
def test_kg_build_with_out_inside_its_input_folder_reads_the_same_on_every_run(tmp_path):
    kg = tmp_path / "kg"
    shutil.copytree(EXAMPLES / "kg", kg)
    _fake_dataset_dir(kg / "someone_elses_build")
    cfg = KGQAConfig(inputs=[kg], out=kg / "out")
    reports = [run_build(KGQABuilder(), cfg) for _ in range(2)]
    clean = run_build(KGQABuilder(), KGQAConfig(inputs=[EXAMPLES / "kg"], out=tmp_path / "clean"))
    for report in reports:
        assert report.manifest.records_total == clean.manifest.records_total
        assert report.manifest.rejects_total == clean.manifest.rejects_total
    # first run: the other build; second run: that one and its own out dir
    assert reports[0].manifest.counters["read.dataset_dirs_skipped"] == 1
    assert reports[1].manifest.counters["read.dataset_dirs_skipped"] == 2
    assert ("dataset dirs skipped (inside inputs)", 2) in reports[1].figures
    assert "read.dataset_dirs_skipped" not in clean.manifest.counters


# ---- item 5 -------------------------------------------------------------------------------------


def _damaged(built: Path, tmp_path: Path, how: str) -> Path:
    d = tmp_path / f"damaged_{how}"
    shutil.copytree(built, d)
    shard = next((d / "data").glob("validation-*.parquet"))
    if how == "deleted":
        shard.unlink()
    elif how == "added":
        shutil.copy(shard, d / "data" / "train-00001-of-00002.parquet")
    elif how == "cut":
        shard.write_bytes(shard.read_bytes()[:-10])
    return d


@pytest.mark.parametrize("how", ["deleted", "added", "cut"])
def test_every_dataset_dir_reader_refuses_shards_that_do_not_match_the_manifest(built, tmp_path, how):
    d = _damaged(built, tmp_path, how)
    for read in (split_files, load_splits, lambda p: list(iter_rows(p))):
        with pytest.raises(MedmillError, match="shards do not match manifest.json"):
            read(d)
    for args in (["build-prefs", d, "--out", tmp_path / "p"], ["dedup", d, "--out", tmp_path / "dd"],
                 ["filter", d, "--out", tmp_path / "f"], ["export", d, "-f", "openai", "--split", "all", "--out", tmp_path / "e"],
                 ["push", d, "--repo", "me/x", "--dry-run"]):
        result = _run(*args)
        assert isinstance(result.exception, MedmillError), (args, result.output)
        assert "shards do not match manifest.json" in str(result.exception)
    report = validate_dir(d)
    assert not report.ok and report.manifest_mismatch


def test_trainer_data_loading_refuses_a_dir_with_a_deleted_shard(built, tmp_path):
    from medmill.trainers.data import DataSpec, load_training_data

    d = _damaged(built, tmp_path, "deleted")
    with pytest.raises(MedmillError, match="is missing"):
        load_training_data([DataSpec.parse(str(d))], "sft", 0.0, 1)


def test_manifest_records_shard_sizes_and_hashes(built):
    manifest = json.loads((built / "manifest.json").read_text())
    shards = [s for info in manifest["splits"].values() for s in info["shards"]]
    assert {s["file"] for s in shards} == {f for info in manifest["splits"].values() for f in info["files"]}
    for s in shards:
        assert (built / s["file"]).stat().st_size == s["bytes"] and len(s["sha256"]) == 64


def test_validate_catches_a_changed_byte_that_keeps_the_size(built, tmp_path):
    d = tmp_path / "flipped"
    shutil.copytree(built, d)
    shard = next((d / "data").glob("train-*.parquet"))
    data = bytearray(shard.read_bytes())
    data[200] ^= 1
    shard.write_bytes(bytes(data))
    report = validate_dir(d)
    assert not report.ok and "sha256" in report.manifest_mismatch[0]


def test_a_dir_without_manifest_stays_readable_with_a_note(built, tmp_path, caplog):
    d = tmp_path / "hub_download"
    shutil.copytree(built, d)
    written = json.loads((d / "manifest.json").read_text(encoding="utf-8"))["records_total"]
    (d / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="medmill"):
        assert sum(t.num_rows for t in load_splits(d).values()) == written
    assert sum("has no manifest.json" in r.getMessage() for r in caplog.records) == 1
    result = _run("validate", d)
    assert result.exit_code == 0
    assert "no manifest.json" in result.output and "OK:" not in result.output
