"""YAML config defaults for commands, and the prompt loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from medmill.builders.llm.prompts import load_prompt
from medmill.config import ConfigOption, defaults_for
from medmill.schemas.errors import MedmillError


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command("demo")
    def demo(config: Path = ConfigOption, per_entity: int = typer.Option(3), name: str = typer.Option("x")):
        typer.echo(f"{per_entity} {name}")

    @app.command("other")
    def other() -> None:  # pragma: no cover - only makes `demo` a sub-command
        pass

    return app


def test_config_file_sets_defaults_and_flags_override(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm_model: qwen\ndemo:\n  per-entity: 9\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(_app(), ["demo", "--config", str(cfg)]).output.strip() == "9 x"
    assert runner.invoke(_app(), ["demo", "--config", str(cfg), "--per-entity", "4"]).output.strip() == "4 x"


def test_config_unknown_key_in_section_is_an_error(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("demo:\n  per_entty: 9\n", encoding="utf-8")
    result = CliRunner().invoke(_app(), ["demo", "--config", str(cfg)])
    assert result.exit_code != 0
    assert "per_entty" in result.output + str(result.exception)


def test_defaults_for_ignores_flat_keys_of_other_commands():
    assert defaults_for("demo", {"llm_model": "q", "per_entity": 2}, {"per_entity"}) == {"per_entity": 2}


def test_prompt_file_renders_and_reports_missing_variables(tmp_path: Path):
    f = tmp_path / "p.yaml"
    f.write_text("id: t\nversion: 2\nsystem: 你是医生\nuser: '请根据{{ fact }}提问'\nkinds: [a]\n", encoding="utf-8")
    p = load_prompt(f)
    assert p.ref == {"id": "t", "version": "2"} and p.extra == {"kinds": ["a"]}
    assert p.render(fact="症状：发热") == [
        {"role": "system", "content": "你是医生"},
        {"role": "user", "content": "请根据症状：发热提问"},
    ]
    with pytest.raises(MedmillError, match="fact"):
        p.render()


def test_unknown_prompt_id():
    with pytest.raises(MedmillError, match="unknown prompt"):
        load_prompt("no_such_prompt_id")
