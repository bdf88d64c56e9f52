"""Helpers of the tests/*/test_hardening_*.py files: run `medmill ...` through its console entry point
in-process (so MedmillError -> one line + exit 2 is what is tested) and check one-line errors."""

from __future__ import annotations

import sys

import pytest


def cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Exit code and stdout+stderr of `medmill ARGS`."""
    from medmill.cli import main

    monkeypatch.setattr(sys, "argv", ["medmill", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def one_line_error(code: int, output: str) -> str:
    """The single `error: ...` line of a failed command; fails on a traceback or a wrong exit code."""
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]
