"""Issue 12 (dataset dirs): corrupt shards, manifests whose kind disagrees with the shards, junk
dedup indexes: one-line errors naming the file, from every command that reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.schemas import Message, SFTRecord, Source
from tests.hardening_cli import cli, one_line_error


def sft_dir(path: Path, n: int = 6) -> Path:
    recs = []
    for i in range(n):
        m = [Message(role="user", content=f"第{i}个问题：高血压怎么办？"), Message(role="assistant", content=f"第{i}个回答：低盐饮食，规律服药。")]
        recs.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"g{i}")))
    write_dataset_dir(path, recs, [], BuildInfo(kind="sft", builder="t", command="t"))
    return path


def _shard(d: Path) -> Path:
    return sorted((d / "data").glob("*.parquet"))[0]


def truncated(d: Path) -> Path:
    f = _shard(d)
    f.write_bytes(f.read_bytes()[:300])
    return d


def scrambled(d: Path) -> Path:
    """Same size, magic bytes intact, the middle overwritten."""
    f = _shard(d)
    data = bytearray(f.read_bytes())
    data[8:-12] = bytes((b * 7 + 13) % 256 for b in data[8:-12])
    f.write_bytes(bytes(data))
    return d


COMMANDS = {
    "validate": lambda d, t: ["validate", d],
    "build-prefs": lambda d, t: ["build-prefs", d, "--out", t / "prefs"],
    "export": lambda d, t: ["export", d, "-f", "sharegpt", "--out", t / "exp"],
    "report": lambda d, t: ["report", d, "--out", t / "r.html"],
    "push --dry-run": lambda d, t: ["push", d, "--repo", "org/ds", "--dry-run"],
    "dedup": lambda d, t: ["dedup", d, "--out", t / "dd"],
    "filter": lambda d, t: ["filter", d, "--out", t / "ff"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_truncated_shard_is_a_one_line_error_naming_it(tmp_path, monkeypatch, capsys, command):
    d = truncated(sft_dir(tmp_path / "ds"))
    if command == "validate":
        # with a manifest, validate reports the size mismatch first; without one it must read the shard
        (d / "manifest.json").unlink()
    line = one_line_error(*cli(monkeypatch, capsys, *COMMANDS[command](d, tmp_path)))  # before: ArrowInvalid
    assert "train-00000-of-00001.parquet" in line


@pytest.mark.parametrize("command", ["validate", "export", "report"])
def test_scrambled_shard_is_a_one_line_error(tmp_path, monkeypatch, capsys, command):
    d = scrambled(sft_dir(tmp_path / "ds"))
    if command == "validate":
        (d / "manifest.json").unlink()
    line = one_line_error(*cli(monkeypatch, capsys, *COMMANDS[command](d, tmp_path)))
    assert "parquet" in line


def _wrong_kind(d: Path, kind: str = "preference") -> Path:
    f = d / "manifest.json"
    manifest = json.loads(f.read_text(encoding="utf-8"))
    manifest["kind"] = kind
    f.write_text(json.dumps(manifest), encoding="utf-8")
    return d


@pytest.mark.parametrize("command", ["export", "dedup", "filter", "validate", "build-prefs"])
def test_manifest_kind_that_disagrees_with_the_columns_is_named(tmp_path, monkeypatch, capsys, command):
    d = _wrong_kind(sft_dir(tmp_path / "ds"))
    args = COMMANDS[command](d, tmp_path)
    if command == "export":
        args = ["export", d, "-f", "dpo", "--out", tmp_path / "exp"]  # a preference format: before, KeyError 'prompt'
    line = one_line_error(*cli(monkeypatch, capsys, *args))
    # before: dedup/filter said "no records survived (read/invalid_record 6)"
    assert "manifest.json says kind 'preference'" in line and "sft records" in line


def test_trainers_name_the_kind_mismatch_too(tmp_path):
    from medmill.schemas.dataset_dir import detect_kind as dir_kind
    from medmill.schemas.errors import MedmillError

    d = _wrong_kind(sft_dir(tmp_path / "ds"), "pretrain")
    with pytest.raises(MedmillError, match="says kind 'pretrain' but .* sft records"):
        dir_kind(d)


@pytest.mark.parametrize(
    "content", [bytes(range(256)) * 4, b"[1, 2, 3]", b'{"parts": ["../../elsewhere.parquet"]}', b'{"parts": 5}'],
    ids=["binary", "array", "escaping_part", "parts_not_a_list"],
)
def test_dedup_index_with_junk_index_json_is_a_one_line_error(tmp_path, monkeypatch, capsys, content):
    d = sft_dir(tmp_path / "ds")
    index = tmp_path / "index"
    index.mkdir()
    (index / "index.json").write_bytes(content)
    line = one_line_error(*cli(monkeypatch, capsys, "dedup", d, "--out", tmp_path / "dd", "--index", index))
    assert "index.json is not a medmill index file" in line  # before: UnicodeDecodeError / AttributeError
