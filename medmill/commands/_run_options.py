"""The command-line options of how a command runs: --executor, --workers, --ray-address."""

from __future__ import annotations

import typer

from medmill.builders.streaming.options import EXECUTORS, RunOptions

__all__ = ["EXECUTORS", "ExecutorOption", "RayAddressOption", "RunOptions", "WorkersOption"]

WorkersOption = typer.Option(0, "--workers", help="Processes (local) or Ray tasks in parallel; 0 = every core this process may use.")
ExecutorOption = typer.Option(
    "local", "--executor",
    help="local: stream batches through --workers processes in bounded memory; memory: hold every record "
         "in memory (the older path, same output); ray: run on a Ray cluster (pip install 'medmill[ray]').",
)
RayAddressOption = typer.Option("", "--ray-address", help="Ray cluster to join (e.g. ray://head:10001 or auto); empty = start a local one.")
