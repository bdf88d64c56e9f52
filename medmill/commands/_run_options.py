"""How a command runs: --executor (local streaming, in memory, Ray), --workers, --ray-address."""

from __future__ import annotations

import os
from dataclasses import dataclass

import typer

from medmill.schemas.errors import MedmillError

EXECUTORS = ("local", "memory", "ray")

WorkersOption = typer.Option(0, "--workers", help="Processes (local) or Ray tasks in parallel; 0 = every core this process may use.")
ExecutorOption = typer.Option(
    "local", "--executor",
    help="local: stream batches through --workers processes in bounded memory; memory: hold every record "
         "in memory (the older path, same output); ray: run on a Ray cluster (pip install 'medmill[ray]').",
)
RayAddressOption = typer.Option("", "--ray-address", help="Ray cluster to join (e.g. ray://head:10001 or auto); empty = start a local one.")


@dataclass
class RunOptions:
    executor: str = "local"
    workers: int = 0
    ray_address: str = ""
    batch_rows: int = 20_000  # records per streamed batch
    max_shard_bytes: int = 256 * 1024 * 1024  # the writer's default; smaller in tests to get many shards

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise MedmillError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 0:
            raise MedmillError(f"--workers must be 0 (all cores) or more, got {self.workers}")
        if self.ray_address and self.executor != "ray":
            raise MedmillError("--ray-address needs --executor ray")

    def process_count(self) -> int:
        return self.workers or len(os.sched_getaffinity(0))
