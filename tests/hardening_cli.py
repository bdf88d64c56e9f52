"""Helpers of the tests/*/test_hardening_*.py files: run `medmill ...` through its console entry point
in-process (so MedmillError -> one line + exit 2 is what is tested) and check one-line errors."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

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


def run_medmill(monkeypatch, capsys, *args) -> subprocess.CompletedProcess:
    """`medmill ARGS` through its console entry point in this process, with separate stdout and stderr
    (what `python -m medmill.cli ARGS` would print, without paying a fresh interpreter per call).

    What a fresh process would add to stderr is added here too: log records at WARNING and above in
    the CLI's own format (pytest's log capture would otherwise swallow them) and Python warnings.
    An exception that escapes `main()` is not turned into an exit code: it fails the test."""
    from medmill.cli import main

    capsys.readouterr()  # drop whatever the test printed before
    monkeypatch.setattr(sys, "argv", ["medmill", *map(str, args)])
    handler = logging.StreamHandler(_StderrNow())
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exc:
            warnings.simplefilter("default")
            main()
    finally:
        root.removeHandler(handler)
    for w in caught:
        sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    out = capsys.readouterr()
    code = exc.value.code
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["medmill", *map(str, args)], returncode, out.out, out.err)


class _StderrNow:
    """A stream that writes to whatever sys.stderr is at the moment (capsys swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
