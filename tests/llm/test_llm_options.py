"""The shared LLM flags: same names on every command, YAML config defaults, one-line errors."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from medmill.builders.llm.types import LLMSettings
from medmill.commands._llm_options import llm_options
from medmill.config import ConfigOption

seen: list[LLMSettings] = []


@llm_options
def fake_build(source: Path = typer.Argument(...), out: Path = typer.Option(..., "--out"),
               config: Path | None = ConfigOption, *, llm: LLMSettings) -> None:
    seen.append(llm)


def run(args: list[str]):
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("fake-build")(fake_build)
    seen.clear()
    return CliRunner().invoke(app, ["fake-build", *args])


def test_flags_become_settings(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    result = run(["in", "--out", "o", "--llm-model", "qwen-plus", "--llm-base-url", "http://h:1/v1",
                  "--llm-api-key-env", "DASHSCOPE_API_KEY", "--temperature", "0.2", "--top-p", "0.8",
                  "--max-tokens", "300", "--llm-seed", "7", "--extra-body", '{"enable_thinking": false}',
                  "--concurrency", "4", "--rpm", "60", "--tpm", "9000", "--max-retries", "2", "--max-reasks", "0",
                  "--request-timeout", "30", "--cache", "c.sqlite", "--structured-output", "json_object"])
    assert result.exit_code == 0, result.output
    assert seen == [LLMSettings(
        model="qwen-plus", base_url="http://h:1/v1", api_key_env="DASHSCOPE_API_KEY", temperature=0.2, top_p=0.8,
        max_tokens=300, seed=7, extra_body={"enable_thinking": False}, concurrency=4, rpm=60, tpm=9000,
        max_retries=2, max_reasks=0, timeout=30.0, cache=Path("c.sqlite"), structured="json_object",
    )]


def test_defaults_and_base_url_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env:8000/v1")
    assert run(["in", "--out", "o"]).exit_code == 0
    assert seen[0] == LLMSettings(base_url="http://from-env:8000/v1")


def test_yaml_config_sets_defaults_and_flags_win(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm_model: deepseek-chat\nconcurrency: 8\nfake-build:\n  extra_body: {top_k: 5}\n  temperature: 0.1\n",
                   encoding="utf-8")
    result = run(["in", "--out", "o", "--config", str(cfg), "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    assert (seen[0].model, seen[0].concurrency, seen[0].temperature, seen[0].extra_body) == (
        "deepseek-chat", 2, 0.1, {"top_k": 5})


def test_bad_values_are_usage_errors() -> None:
    for args in (["--extra-body", "{oops"], ["--extra-body", "[1, 2]"], ["--concurrency", "0"],
                 ["--llm-backend", "gpt"], ["--structured-output", "xml"]):
        result = run(["in", "--out", "o", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and seen == []


def test_every_llm_command_has_the_same_flags() -> None:
    from medmill.cli import _register, app

    _register()
    group = typer.main.get_command(app)
    flags = {"--llm-backend", "--llm-base-url", "--llm-model", "--llm-api-key-env", "--temperature", "--top-p",
             "--max-tokens", "--llm-seed", "--extra-body", "--concurrency", "--rpm", "--tpm", "--max-retries",
             "--max-reasks", "--request-timeout", "--cache"}
    llm_commands = []
    for name, command in group.commands.items():
        opts = {o for p in command.params for o in p.opts}
        if "--llm-model" in opts:
            llm_commands.append(name)
            assert flags <= opts, (name, flags - opts)
    assert "build-kg-qa" in llm_commands


def test_a_key_given_instead_of_an_env_var_name_is_refused_without_echoing_it(monkeypatch) -> None:
    from medmill.commands._llm_options import settings_from_options
    from medmill.schemas.errors import MedmillError

    for pasted in ("sk-4f9c2a7d1e8b4c3aa0b1c2d3e4f5a6b7", "4f9c2a7d1e8b4c3aa0b1c2d3e4f5a6b7c8d9e0f1"):
        try:
            settings_from_options({"llm_api_key_env": pasted, "llm_model": "m"})
        except MedmillError as e:
            assert "NAME of the environment variable" in str(e) and pasted not in str(e)
        else:
            raise AssertionError(f"{pasted} accepted as an environment variable name")
    monkeypatch.setenv("my_key_2024_for_the_proxy_server", "x")  # an odd but real variable name is fine
    for name in ("DEEPSEEK_API_KEY", "OPENAI_API_KEY", "my_key_2024_for_the_proxy_server"):
        assert settings_from_options({"llm_api_key_env": name}).api_key_env == name
