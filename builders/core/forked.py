"""One ordered map over forked worker processes, for every caller that ships closures (streamed
batches, dedup blocks and bands): with the fork start method a worker inherits the function, so
nothing is pickled but the items and results."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from medmill.builders.core.malloc import worker_init

_FN: Callable[[Any], Any] | None = None  # set in each worker by its initializer (inherited, not pickled)


def _start_worker(fn: Callable[[Any], Any]) -> None:
    global _FN
    _FN = fn
    worker_init()


def _call(item: Any) -> Any:
    assert _FN is not None
    return _FN(item)


def forked_imap(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """`fn(x) for x in items`, in input order, on `workers` forked processes (in this process when
    `workers` <= 1). `items` is read lazily and at most 2 x workers results wait in the parent, so
    memory stays bounded however long the input."""
    if workers <= 1:
        yield from map(fn, items)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # worker_init: gc.freeze (inherited objects are never traversed, nor their pages copied by it) and
    # a malloc that keeps freed blocks for the next item
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_start_worker, initargs=(fn,)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(_call, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
