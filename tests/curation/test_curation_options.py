"""`@curation_options` gives a typer command the shared curation flags and a ready CurationSettings."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._curation_options import curation_options
from medmill.schemas.errors import MedmillError

seen: list[CurationSettings] = []


@curation_options
def build(inp: Path = typer.Argument(...), n: int = typer.Option(3, "--n"), curation: CurationSettings = None) -> None:
    seen.append(curation)


app = typer.Typer()
app.command("build")(build)
app.command("other")(lambda: None)


def run(*args: str):
    seen.clear()
    return CliRunner().invoke(app, ["build", *args])


def test_defaults_and_flags(tmp_path):
    assert run("x").exit_code == 0 and seen[0] == CurationSettings()
    lex = tmp_path / "l.txt"
    lex.write_text("坏词\n", encoding="utf-8")
    result = run("x", "--n", "5", "--no-quality", "--pii-action", "drop", "--no-dedup", "--dedup-threshold", "0.7",
                 "--safety-lexicon", str(lex), "--decontaminate", str(lex), "--dedup-index", str(tmp_path / "i"))
    assert result.exit_code == 0, result.output
    s = seen[0]
    assert (s.quality, s.pii_action, s.dedup, s.dedup_threshold) == (False, "drop", False, 0.7)
    assert s.lexicons == [lex] and s.decontaminate == [lex] and s.dedup_index == tmp_path / "i"


def test_bad_values_are_user_errors():
    with pytest.raises(MedmillError, match="--pii-action"):
        raise_from(run("x", "--pii-action", "mask"))
    with pytest.raises(MedmillError, match="file not found"):
        raise_from(run("x", "--decontaminate", "/nonexistent/eval.json"))


def raise_from(result) -> None:
    if result.exception is not None:
        raise result.exception


def test_needs_a_curation_parameter_and_no_clash():
    with pytest.raises(TypeError, match="needs a `curation"):
        curation_options(lambda x: x)

    def clash(quality: bool = True, curation: CurationSettings = None) -> None: ...

    with pytest.raises(TypeError, match="already has"):
        curation_options(clash)
