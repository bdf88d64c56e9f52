"""Issue 12, items 2, 3 and 17: what a build does to its --out when it fails, when --out is (in) one of
its inputs, and when --out is a mount point (renames from its parent fail with EXDEV)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.schemas import Message, SFTRecord, Source
from medmill.schemas.dataset_dir import split_files
from medmill.schemas.errors import MedmillError

if not any(c.name == "build-kg-qa" for c in medmill.cli.app.registered_commands):
    medmill.cli._register()

EXAMPLE_KG = Path(__file__).resolve().parents[2] / "examples" / "kg"


def _run(*args):
    return CliRunner().invoke(medmill.cli.app, [str(a) for a in args])


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("built") / "D"
    result = _run("build-kg-qa", EXAMPLE_KG, "--out", d, "--val-size", "0.1")
    assert result.exit_code == 0, result.output
    return d


def _kg_without_facts(root: Path) -> Path:
    kg = root / "kg_no_facts"
    kg.mkdir()
    (kg / "x.jsonl").write_text('{"name": "感冒"}\n{"name": "头痛"}\n', encoding="utf-8")
    return kg


# ---- item 2: a failed rebuild leaves the previous dataset in place ----------------------------------


def test_failed_rebuild_keeps_the_previous_dataset_and_puts_rejects_beside_it(tmp_path, built):
    d = tmp_path / "D"
    import shutil

    shutil.copytree(built, d)
    before = _snapshot(d)
    records_before = json.loads((d / "manifest.json").read_text())["records_total"]
    assert records_before > 500

    result = _run("build-kg-qa", _kg_without_facts(tmp_path), "--out", d)
    assert isinstance(result.exception, MedmillError)
    message = str(result.exception)
    assert "no records survived" in message
    beside = tmp_path / "D.rejects.jsonl"
    assert str(beside) in message and "left as it was" in message
    assert _snapshot(d) == before  # not one byte of the old dataset changed
    rows = [json.loads(line) for line in beside.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and {r["reason"] for r in rows} == {"no_usable_facts"}

    # a later successful build into D clears the stale report of the failed one (a small KG will do)
    small = tmp_path / "small"
    small.mkdir()
    (small / "kg.jsonl").write_text('{"name": "感冒", "symptom": ["鼻塞", "流涕", "咳嗽"]}\n', encoding="utf-8")
    assert _run("build-kg-qa", small, "--out", d).exit_code == 0
    assert not beside.exists()


def test_failed_first_build_writes_no_dataset_dir_marked_complete(tmp_path):
    d = tmp_path / "fresh"
    result = _run("build-kg-qa", _kg_without_facts(tmp_path), "--out", d)
    assert isinstance(result.exception, MedmillError)
    assert not (d / "manifest.json").exists()
    assert (tmp_path / "fresh.rejects.jsonl").is_file()


# ---- item 3: --out may not be (in) an input ----------------------------------------------------------


@pytest.mark.parametrize("command", ["build-prefs", "dedup", "filter"])
@pytest.mark.parametrize("where", ["same", "inside", "data"])
def test_commands_reading_dataset_dirs_refuse_an_out_that_is_or_is_inside_an_input(tmp_path, built, command, where):
    out = {"same": built, "inside": built / "sub", "data": built / "data"}[where]
    before = _snapshot(built)
    result = _run(command, built, "--out", out)
    assert isinstance(result.exception, MedmillError), result.output
    assert "--out" in str(result.exception) and str(built) in str(result.exception)
    assert _snapshot(built) == before
    assert not (built / "sub").exists()


@pytest.mark.parametrize("out", ["D", "D/train.jsonl", "D/exported"])
def test_export_refuses_to_write_into_its_source_dir(tmp_path, built, out):
    before = _snapshot(built)
    target = built.parent / out
    result = _run("export", built, "-f", "openai", "--out", target)
    assert isinstance(result.exception, MedmillError), result.output
    assert _snapshot(built) == before


def test_out_vs_inputs_rule(tmp_path):
    from medmill.schemas.dataset_dir import check_out_not_input

    ds = tmp_path / "ds"
    (ds / "data").mkdir(parents=True)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "kg.jsonl").write_text("{}", encoding="utf-8")
    with pytest.raises(MedmillError, match="one of the inputs"):
        check_out_not_input(tmp_path / "ds", [ds])
    with pytest.raises(MedmillError, match="inside the input dataset dir"):
        check_out_not_input(ds / "x", [ds])
    with pytest.raises(MedmillError, match="would overwrite"):
        check_out_not_input(tmp_path / "o", [tmp_path / "o" / "data" / "kg.jsonl"])
    with pytest.raises(MedmillError, match="one of the inputs"):
        check_out_not_input(raw / "kg.jsonl", [raw / "kg.jsonl"])
    # allowed: an out dir inside a raw input folder (the readers skip it), or beside the inputs
    check_out_not_input(raw / "out", [raw])
    check_out_not_input(tmp_path / "new", [ds, raw])


# ---- item 17: --out is a mount point -------------------------------------------------------------


def _records(n: int = 6) -> list[SFTRecord]:
    out = []
    for i in range(n):
        m = [Message(role="user", content=f"问题{i}：头痛怎么办？"), Message(role="assistant", content=f"回答{i}：注意休息。")]
        out.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(file="kg.json", line=i + 1, builder="t")))
    return out


def test_writing_into_a_mount_point_never_renames_across_it(tmp_path, monkeypatch):
    mount = tmp_path / "mnt"
    mount.mkdir()  # an existing, empty mount point: renames between it and anything outside fail
    real_replace, real_rename = os.replace, os.rename

    def inside(p) -> bool:
        return Path(os.path.abspath(p)).is_relative_to(mount)

    def guarded(real):
        def move(src, dst, *a, **kw):
            if inside(src) != inside(dst):
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
            return real(src, dst, *a, **kw)
        return move

    monkeypatch.setattr(os, "replace", guarded(real_replace))
    monkeypatch.setattr(os, "rename", guarded(real_rename))
    manifest = write_dataset_dir(mount, _records(), [], BuildInfo(kind="sft", builder="t", command="medmill t"))
    assert manifest.records_total == 6
    assert sum(1 for fs in split_files(mount).values() for _ in fs) == 1
    assert sorted(p.name for p in mount.iterdir()) == ["README.md", "data", "manifest.json", "rejects.jsonl"]
    # and again over the finished dir (the rebuild case)
    write_dataset_dir(mount, _records(4), [], BuildInfo(kind="sft", builder="t", command="medmill t"))
    assert json.loads((mount / "manifest.json").read_text())["records_total"] == 4
    assert not any(p.name.startswith(".") for p in mount.iterdir())


@pytest.mark.slow  # `train sft` imports transformers and trl before it looks at --out (~10 s of CPU)
def test_train_refuses_checkpoints_inside_its_dataset_dir(built):
    before = _snapshot(built)
    result = _run("train", "sft", "--model", "no_such_model", "--data", built, "--out", built / "ckpt")
    assert isinstance(result.exception, MedmillError), result.output
    assert "inside the input dataset dir" in str(result.exception)
    assert _snapshot(built) == before
