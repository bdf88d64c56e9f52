"""How a run over dataset dirs executes: local streaming, in memory (the older path), or Ray."""

from __future__ import annotations

import os
from dataclasses import dataclass

from medmill.builders.core.writer import DEFAULT_MAX_SHARD_BYTES
from medmill.builders.streaming.inputs import DEFAULT_BATCH_ROWS
from medmill.schemas.errors import MedmillError

EXECUTORS = ("local", "memory", "ray")


@dataclass
class RunOptions:
    executor: str = "local"
    workers: int = 0  # 0 = every core this process may use (local) / every CPU of the cluster (ray)
    ray_address: str = ""
    batch_rows: int = DEFAULT_BATCH_ROWS
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES  # the writer's; smaller in tests to get many shards

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise MedmillError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 0:
            raise MedmillError(f"--workers must be 0 (all cores) or more, got {self.workers}")
        if self.ray_address and self.executor != "ray":
            raise MedmillError("--ray-address needs --executor ray")
        if self.batch_rows < 1:
            raise MedmillError(f"--batch-rows must be at least 1, got {self.batch_rows}")

    def process_count(self) -> int:
        return self.workers or len(os.sched_getaffinity(0))
