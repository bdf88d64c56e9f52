"""Persistent request cache: one row per finished completion, written the moment it arrives.

Keyed by a hash of everything that determines a completion (backend, model, messages, generation
params, response format, prompt id/version). sqlite in WAL mode: a process killed with -9 loses
at most the completions still in flight, never a committed one, and several builds may share one
cache file (`--cache PATH`). Failed calls are not cached, so a re-run retries them.

Many writers: the worker processes of one build on one machine (`--workers N`) open the same file;
WAL lets them read while one writes, and the 30 s busy timeout makes a writer wait its turn (each
write is one small row). On a Ray cluster a worker may run on another machine, whose disk is not the
driver's, so there the workers reach the driver's cache file through `CacheServer`, a Ray actor on
the driver's node, via `RemoteCache`: one file, every completion committed the moment it arrives.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medmill.schemas.errors import MedmillError


@dataclass
class Completion:
    """What a backend returned for one call."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def call_key(payload: dict[str, Any]) -> str:
    """A stable hash of a call's payload (canonical JSON, keys sorted)."""
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_opened: list[Path] = []  # caches opened in this process (the CLI's Ctrl-C message names them)


def opened_caches() -> list[Path]:
    """Request caches this process has opened: only then does an interrupted run have cached calls."""
    return list(_opened)


class CacheLike(Protocol):
    """What the engine needs from a cache: the sqlite file itself or a client of a shared one."""

    def get(self, key: str) -> Completion | None: ...

    def put(self, key: str, completion: Completion) -> None: ...

    def close(self) -> None: ...


class RequestCache:
    def __init__(self, path: Path) -> None:
        _opened.append(Path(path))
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS completions ("
                " key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT,"
                " prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
            )
        except sqlite3.DatabaseError as e:
            raise MedmillError(f"cannot open the LLM cache {self.path}: {e}") from None
        except OSError as e:  # e.g. a parent of the path is a file, or no permission
            raise MedmillError(f"cannot create the LLM cache {self.path}: {e.strerror or e}") from None

    def get(self, key: str) -> Completion | None:
        row = self._db.execute(
            "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM completions WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], finish_reason=row[1], prompt_tokens=row[2] or 0, completion_tokens=row[3] or 0)

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                completion.text,
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
                time.time(),
            ),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CacheServer:
    """The driver's `RequestCache` served to Ray workers (the body of a Ray actor, see `start_cache_server`)."""

    def __init__(self, path: str) -> None:
        self.cache = RequestCache(Path(path))

    def get(self, key: str) -> Completion | None:
        return self.cache.get(key)

    def put(self, key: str, completion: Completion) -> None:
        self.cache.put(key, completion)


def start_cache_server(path: Path) -> Any:
    """A Ray actor holding the cache file `path`, pinned to this (the driver's) node so the file is the
    one a local run uses; it takes no CPU slot from the workers and dies with its last handle."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor = ray.remote(num_cpus=0, max_concurrency=1)(CacheServer)
    return actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote(str(path))


class RemoteCache:
    """A worker's client of a `CacheServer` actor (same interface as `RequestCache`)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def get(self, key: str) -> Completion | None:
        import ray

        return ray.get(self.server.get.remote(key))

    def put(self, key: str, completion: Completion) -> None:
        import ray

        ray.get(self.server.put.remote(key, completion))  # committed on the driver's disk before going on

    def close(self) -> None:
        """The server outlives this client: other workers still use it."""
