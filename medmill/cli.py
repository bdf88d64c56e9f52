"""The front door: one typer app; every command is registered here, its options live in
medmill/commands/<name>.py, and the work is done by medmill.builders / medmill.trainers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.markup import escape

from medmill.console import err_console
from medmill.schemas.errors import MedmillError
from medmill.version import __version__

app = typer.Typer(
    name="medmill",
    help="Medical knowledge -> validated SFT / preference / pretraining shards -> trained models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medmill {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details to stderr."),
) -> None:
    """medmill: build, curate, publish and train on Chinese medical datasets."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


_registered = False


def _register() -> None:
    """Add every command to `app`, once per process: a second `main()` in the same process (tests,
    embedding) must not add them all again, or each run would rebuild an ever longer command list."""
    global _registered
    if _registered:
        return
    # Each module adds its command(s) to `app`; the order here is the order of `medmill --help`.
    from medmill.commands import register_all

    register_all(app)
    _registered = True


def main() -> None:
    _register()
    try:
        app()
    except MedmillError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, markup=True)
        sys.exit(2)
    except OSError as e:
        # a file-system refusal (not a directory, permission denied, disk full) is the user's to fix:
        # one line, the traceback only with --verbose
        logging.getLogger("medmill").debug("file-system error", exc_info=True)
        from medmill.builders.core.fileinfo import describe_os_error

        filename = getattr(e, "filename", None)
        what = describe_os_error(Path(filename), e) if filename else (e.strerror or str(e))
        where = f": {filename}" if filename else ""
        err_console.print(f"[red]error:[/red] {escape(what)}{escape(where)}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into a silent exit 130
            _interrupted()
        raise


INTERRUPT_HINTS: dict[str, str] = {
    "train": "re-run the same command to resume from the last checkpoint saved in --out",
}


def _interrupt_hint() -> str:
    """What helps after Ctrl-C: cached LLM calls only if this run made LLM calls through a cache,
    checkpoints for train, else nothing more than re-running."""
    from medmill.builders.llm.cache import opened_caches

    if opened_caches():
        return "re-run the same command to resume (finished LLM calls are cached)"
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    return INTERRUPT_HINTS.get(command, "re-run the same command to start again")


def _interrupted() -> None:
    err_console.print(f"interrupted; {_interrupt_hint()}")
    sys.exit(130)


if __name__ == "__main__":
    main()
