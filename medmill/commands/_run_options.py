"""The command-line options of how a command runs and where it writes: --executor, --workers,
--ray-address, and the --out of every build, filter and dedup."""

from __future__ import annotations

import typer

from medmill.builders.streaming.options import EXECUTORS, RunOptions

__all__ = ["EXECUTORS", "ExecutorOption", "OutOption", "RayAddressOption", "RunOptions", "WorkersOption"]

WorkersOption = typer.Option(0, "--workers", help="Processes (local) or Ray tasks in parallel; 0 = every core this process may use.")
ExecutorOption = typer.Option(
    "local", "--executor",
    help="local: stream batches through --workers processes in bounded memory; memory: hold every record "
         "in memory (the older path, same output); ray: run on a Ray cluster (pip install 'medmill[ray]').",
)
RayAddressOption = typer.Option("", "--ray-address", help="Ray cluster to join (e.g. ray://head:10001 or auto); empty = start a local one.")

# a str, not a Path: a Path would turn s3://bucket/x into s3:/bucket/x in messages and the manifest's command
OutOption = typer.Option(
    ..., "--out", "-o", metavar="DIR|URI",
    help="Output dataset dir: a local path, or a pyarrow filesystem URI (s3://, gs://, hdfs://, file://) written "
         "from a local staging dir (in $TMPDIR) once the build is complete; the dataset already there stays as it "
         "was if the build fails. An LLM build's request cache then stays on this machine (see --cache).",
)
