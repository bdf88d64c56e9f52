"""How glibc's malloc hands memory back, per process kind (no-ops off glibc).

The driver of a streamed run keeps its resident memory close to what it holds: every allocation of
256 KiB or more gets its own mapping, returned when freed (`fixed_mmap_threshold`). Short-lived
forked workers want the opposite: each batch or block allocates and frees the same large temporaries
again and again, and a fresh mapping costs a page fault per 4 KiB touched - a third of the dedup
decision's CPU time was the kernel zeroing pages (bench/scale.py). `roomy_malloc` lets a worker keep
freed memory for its next batch; it is released when the worker exits.
"""

from __future__ import annotations

import gc
from functools import cache

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
WORKER_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for its dynamic threshold
WORKER_TRIM_THRESHOLD = 64 * 1024 * 1024  # glibc's dynamic default: twice the mmap threshold


@cache
def _libc():
    """glibc by its soname, once per process (None elsewhere: these mallopt parameters are glibc's).
    Not `ctypes.util.find_library`, which runs `ldconfig -p` in a subprocess: a fork of the worker at
    each worker start."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _mallopt(param: int, value: int) -> None:
    try:
        libc = _libc()
        if libc is not None:
            libc.mallopt(param, value)
    except AttributeError:
        pass


def fixed_mmap_threshold() -> None:
    """Allocations of 256 KiB and more (arrow buffers, numpy arrays) get their own mapping, handed back
    to the system when freed. glibc's default raises the threshold to the largest block freed so far
    (up to 32 MiB), after which a shard's buffers come from the heap and stay there: the writer's
    resident memory then grew by ~100 MB per shard written (1M records: 827 MB peak)."""
    _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def roomy_malloc() -> None:
    """For a forked worker: blocks under 32 MiB come from the heap and freed ones are reused, not
    returned (up to 64 MiB kept at the heap top), so repeated temporaries cost no page faults."""
    _mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)
    _mallopt(_M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD)


def worker_init() -> None:
    """Initializer of forked pools: the inherited objects are never traversed by the worker's garbage
    collector (nor their pages copied by it), and malloc keeps what the worker frees."""
    gc.freeze()
    roomy_malloc()
