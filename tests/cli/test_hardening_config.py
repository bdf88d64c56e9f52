"""Issue 12 (--config files): encodings, sections that are not mappings, unknown flat keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.schemas import Message, SFTRecord, Source
from tests.hardening_cli import cli


@pytest.fixture
def sft_dir(tmp_path: Path) -> Path:
    recs = []
    for i, (q, a) in enumerate([("高血压怎么办？", "低盐饮食，规律服药。"), ("糖尿病吃什么？", "控制主食，多吃蔬菜。")]):
        m = [Message(role="user", content=q), Message(role="assistant", content=a)]
        recs.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"g{i}")))
    write_dataset_dir(tmp_path / "ds", recs, [], BuildInfo(kind="sft", builder="t", command="t"))
    return tmp_path / "ds"


def config_error(code: int, output: str) -> str:
    """The `Error: Invalid value for '--config': ...` line of a refused config (no traceback)."""
    assert code == 2, output
    assert "Traceback" not in output and "Error" in output, output
    [line] = [x for x in output.splitlines() if "--config" in x and "Error" in x]
    return line


def _dedup(monkeypatch, capsys, sft_dir: Path, config: Path) -> tuple[int, str]:
    return cli(monkeypatch, capsys, "dedup", sft_dir, "--out", sft_dir.parent / "out", "--config", config)


@pytest.mark.parametrize(
    "name,data,expected",
    [
        ("binary", b"\x00\x01\x02\xff\xfe junk", "binary"),
        ("bad_bytes", b"threshold: 0.9\n" + b"\x80\xff\x80\xff", "cannot decode"),
    ],
)
def test_non_text_config_is_a_one_line_error(tmp_path, monkeypatch, capsys, sft_dir, name, data, expected):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_bytes(data)
    assert expected in config_error(*_dedup(monkeypatch, capsys, sft_dir, cfg))  # before: UnicodeDecodeError


@pytest.mark.parametrize("encoding", ["gb18030", "utf-16", "utf-8-sig"])
def test_gbk_and_utf16_configs_are_read(tmp_path, monkeypatch, capsys, sft_dir, encoding):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes("# 去重配置：阈值\nthreshold: 0.95\n".encode(encoding))
    code, output = _dedup(monkeypatch, capsys, sft_dir, cfg)
    assert code == 0, output
    assert '"threshold": 0.95' in (sft_dir.parent / "out" / "manifest.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("value,shown", [("5", "int 5"), ("[1, 2]", "list"), ('"abc"', "str 'abc'")])
def test_section_that_is_not_a_mapping_is_a_one_line_error(tmp_path, monkeypatch, capsys, sft_dir, value, shown):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dedup: {value}\n", encoding="utf-8")
    line = config_error(*_dedup(monkeypatch, capsys, sft_dir, cfg))  # before: TypeError / "unknown a, b, c"
    assert "section dedup must be a mapping" in line and shown in line
    assert "a, b, c" not in line


def test_unknown_flat_keys_are_refused_with_close_matches(tmp_path, monkeypatch, capsys, sft_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("val_sise: 0.1\nthreshhold: 0.5\n", encoding="utf-8")
    line = config_error(*_dedup(monkeypatch, capsys, sft_dir, cfg))  # before: both ignored, exit 0
    assert "val_sise (did you mean val_size?)" in line and "threshhold (did you mean threshold" in line


def test_private_typo_does_not_push_public(tmp_path, monkeypatch, capsys, sft_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("privat: true\n", encoding="utf-8")
    code, output = cli(monkeypatch, capsys, "push", sft_dir, "--repo", "me/ds", "--dry-run", "--config", cfg)
    assert "privat (did you mean private?)" in config_error(code, output)


def test_flat_keys_of_other_commands_and_a_flat_bool_named_like_a_command_are_fine(tmp_path, monkeypatch, capsys, sft_dir):
    cfg = tmp_path / "c.yaml"
    # llm_model and dedup (--no-dedup) belong to the builds; the dedup section is this command's
    cfg.write_text("llm_model: qwen-plus\nper_entity: 3\ndedup: false\n", encoding="utf-8")
    code, output = _dedup(monkeypatch, capsys, sft_dir, cfg)
    assert code == 0, output
    cfg.write_text("llm_model: qwen-plus\ndedup:\n  threshold: 0.9\n", encoding="utf-8")
    code, output = _dedup(monkeypatch, capsys, sft_dir, cfg)
    assert code == 0, output


def test_unknown_section_and_section_typos_name_close_matches(tmp_path, monkeypatch, capsys, sft_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dedupe:\n  threshold: 0.5\n", encoding="utf-8")
    assert "unknown section dedupe (did you mean dedup?)" in config_error(*_dedup(monkeypatch, capsys, sft_dir, cfg))
    cfg.write_text("dedup:\n  threshhold: 0.5\n", encoding="utf-8")
    assert "threshhold (did you mean threshold?)" in config_error(*_dedup(monkeypatch, capsys, sft_dir, cfg))


@pytest.mark.parametrize("data", [b"# \xc5\xe4\xd6\xc3\nmax_steps: 3\n", b"\x00\x01\x02\xff\xfe\xfa junk"])
def test_train_recipe_that_is_not_utf8_is_a_one_line_error(tmp_path, monkeypatch, capsys, data):
    from tests.hardening_cli import one_line_error

    cfg = tmp_path / "r.yaml"
    cfg.write_bytes(data)
    code, output = cli(monkeypatch, capsys, "train", "sft", "--config", cfg, "--model", tmp_path, "--data", tmp_path,
                       "--out", tmp_path / "run")
    line = one_line_error(code, output)  # before: UnicodeDecodeError traceback
    assert "r.yaml" in line and ("UTF-8" in line or "YAML" in line)
