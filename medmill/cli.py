"""The front door: one typer app; every command is registered here, its options live in
medmill/commands/<name>.py, and the work is done by medmill.builders / medmill.trainers."""

from __future__ import annotations

import logging
import sys

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


def _register() -> None:
    # Each module adds its command(s) to `app`; the order here is the order of `medmill --help`.
    from medmill.commands import register_all

    register_all(app)


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
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        err_console.print(f"[red]error:[/red] {escape(e.strerror or str(e))}{escape(where)}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as e:
        if e.code == 130:  # typer turns Ctrl-C into a silent exit 130
            _interrupted()
        raise


def _interrupted() -> None:
    err_console.print("interrupted; re-run the same command to resume (finished LLM calls are cached)")
    sys.exit(130)


if __name__ == "__main__":
    main()
