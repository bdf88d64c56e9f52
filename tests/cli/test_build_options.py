"""The flags every build command shares come from its config class (@build_options): the common
BuildConfig fields with the config's defaults and help, and the run flags; bad values are one-line
errors naming the flag; --workers 2 writes the same dataset dir as --workers 1."""

from __future__ import annotations

import pytest
import typer.main

import medmill.cli
from medmill.builders.streaming import build_stream, executors
from medmill.commands._build_options import COMMON_FIELDS, CommonBuildOptions
from medmill.commands._signature import field_flag
from tests.dialogue.corpora import write_toyhom_csv
from tests.hardening_cli import cli, one_line_error
from tests.streaming.test_streaming import digest

BUILDS = {"build-kg-qa", "build-book-qa", "build-lit-qa", "build-prefs", "build-self-instruct", "build-tasks",
          "build-dialogue", "build-pt"}
# flags a builder did not offer before the flags were generated, and still does not
NOT_OFFERED = {"build-kg-qa": {"limit"}, "build-pt": {"limit"}, "build-book-qa": {"source_licenses"},
               "build-lit-qa": {"source_licenses"}}
RUN_FLAGS = {"--workers": 0, "--executor": "local", "--ray-address": ""}


def _build_commands() -> dict[str, tuple[object, object]]:
    """name -> (the decorated callback, its click command), for every registered build-* command."""
    medmill.cli._register()
    group = typer.main.get_command(medmill.cli.app)
    return {info.name: (info.callback, group.commands[info.name])
            for info in medmill.cli.app.registered_commands if info.name and info.name.startswith("build-")}


def _options(command) -> dict[str, object]:
    return {opt: p for p in command.params for opt in p.opts}


def test_every_build_command_has_the_common_and_run_flags_of_its_config():
    commands = _build_commands()
    assert set(commands) == BUILDS
    for name, (callback, command) in commands.items():
        config_cls, fields = callback.build_options  # recorded by @build_options
        assert set(COMMON_FIELDS) - set(fields) == NOT_OFFERED.get(name, set()), name
        options = _options(command)
        for field in fields:
            info = config_cls.model_fields[field]
            flag = field_flag(config_cls, field)
            assert flag in options, (name, flag)
            default = info.get_default(call_default_factory=True)
            expected = [f"{k}={v}" for k, v in default.items()] if isinstance(default, dict) else default
            assert options[flag].default == expected, (name, flag)
            assert options[flag].help, (name, flag)
            if field not in callback.build_options_help:
                assert options[flag].help == info.description, (name, flag)
        for field in NOT_OFFERED.get(name, ()):
            assert field_flag(config_cls, field) not in options, (name, field)
        for flag, default in RUN_FLAGS.items():
            assert options[flag].default == default, (name, flag)


def test_builder_specific_defaults_and_spellings_come_from_the_config():
    commands = _build_commands()
    book = _options(commands["build-book-qa"][1])
    assert "--limit-chunks" in book and "--limit" not in book
    assert book["--val-size"].default == 0.05 and "grouped by section" in book["--val-size"].help
    assert _options(commands["build-tasks"][1])["--test-size"].default == 0.1
    assert _options(commands["build-pt"][1])["--val-size"].default == 0.02
    assert _options(commands["build-kg-qa"][1])["--val-size"].default == 0.0
    assert "memory" in _options(commands["build-dialogue"][1])["--executor"].help


@pytest.mark.parametrize("name", sorted(BUILDS))
@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--val-size", "1.5", "bad option --val-size: Input should be less than 1"),
    ("--executor", "spark", "--executor must be one of local, memory, ray"),
    ("--workers", "-1", "--workers must be 0 (all cores) or more"),
])
def test_bad_common_or_run_value_is_one_line_naming_the_flag(tmp_path, monkeypatch, capsys, name, flag, value, says):
    args = {"build-tasks": ["--task", "mcq", str(tmp_path)], "build-self-instruct": ["--seeds", str(tmp_path), "--num", "3"]}
    code, output = cli(monkeypatch, capsys, name, *args.get(name, [str(tmp_path)]), "--out", tmp_path / "out", flag, value)
    assert says in one_line_error(code, output)
    assert not (tmp_path / "out").exists()


def test_val_plus_test_size_of_one_is_refused(tmp_path, monkeypatch, capsys):
    code, output = cli(monkeypatch, capsys, "build-dialogue", tmp_path, "--out", tmp_path / "o", "--val-size", "0.5",
                       "--test-size", "0.5")
    assert "--val-size plus --test-size must be below 1" in one_line_error(code, output)


@pytest.mark.slow  # ~10 s: two builds with plots in their cards
def test_workers_2_writes_the_same_dataset_dir_as_workers_1(tmp_path, monkeypatch, capsys):
    csv = tmp_path / "内科.csv"
    write_toyhom_csv(csv, 600, ragged_every=300, duplicate_every=40)
    # build-dialogue streams: batches of 100 items (not 2,000) so the 600 rows really are spread over 2 processes
    init = build_stream.StreamExecutor.__init__
    monkeypatch.setattr(build_stream.StreamExecutor, "__init__", lambda self, workers, batch_items=0: init(self, workers, 100))
    mapped = []
    ordered_map = build_stream.ordered_map

    def spy(work, items, workers):
        batches = list(items)
        mapped.append((workers, len(batches)))
        return ordered_map(work, batches, workers)

    monkeypatch.setattr(build_stream, "ordered_map", spy)
    outs = {}
    for workers in ("1", "2"):
        outs[workers] = tmp_path / f"out{workers}"
        code, output = cli(monkeypatch, capsys, "build-dialogue", csv, "--out", outs[workers], "--val-size", "0.1",
                           "--workers", workers)
        assert code == 0, output
    assert [w for w, _ in mapped] == [1, 2] and all(n >= 5 for _, n in mapped)  # --workers reached the stream's pool
    one, two = digest(outs["1"]), digest(outs["2"])
    assert "manifest.json" in one and any(k.startswith("data/") for k in one)
    assert one == two


def test_common_options_hand_the_command_one_typed_object():
    from medmill.builders.dialogue.build import DialogueConfig
    from medmill.builders.streaming.options import RunOptions

    common = CommonBuildOptions({"seed": 7, "val_size": 0.2}, {"seed": "--seed", "val_size": "--val-size"},
                                RunOptions("memory", 4))
    cfg = common.config(DialogueConfig, inputs=["x.csv"], out="o")
    assert (cfg.seed, cfg.val_size) == (7, 0.2)
    assert common.config_fields() == {"seed": 7, "val_size": 0.2}
    assert common.executor() is None  # memory: run_build's one process, whatever --workers says
    assert isinstance(CommonBuildOptions({}, {}, RunOptions("local", 2)).executor(), executors.ProcessExecutor)
