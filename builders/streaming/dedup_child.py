"""The global dedup step in a fresh process, for a Ray driver.

The decision and the reject/cluster writing after it fork helper processes (`fork_imap`), but a Ray
driver must not fork: its gRPC threads make a forked copy unsafe, so there they would run on one core.
A freshly started interpreter has no Ray threads, so it may fork its own helpers: the driver writes the
step's inputs to one pickle (the compact per-record state, 48 B per record; band keys and rows stay in
their files), starts `python -c` on `child_main`, waits, and reads the result back (the decision
arrays, 25 B per record, and the figures; the reject and cluster files are written by the child).

Started with `subprocess` (fork and exec with no Python in between: safe in a threaded driver), not the
multiprocessing "spawn" start method: that re-imports the driver's main module (the CLI with all its
commands, or a user's script) in the child; `-c` imports only this step's modules (~0.6 s, ~90 MB).

Errors reach the user as they would in-process: the child pickles its exception back and the driver
raises it (a MedmillError stays one line; anything else carries the child's traceback as a note).
No orphans: the child leads its own process group (its forked helpers are in it too); the driver kills
that group when it is interrupted or the child fails, and on Linux the child kills its group when the
driver dies (`PR_SET_PDEATHSIG`), so a killed driver leaves nothing running either.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from medmill.builders.curation.dedup import PARALLEL_MIN_DOCS, DedupConfig, decision_workers
from medmill.builders.curation.dedup_pairs import in_ray_driver
from medmill.schemas.errors import MedmillError

CHILD_MIN_RECORDS = PARALLEL_MIN_DOCS  # below this the decision forks no helpers: running in the driver costs nothing
JOB_FILE, RESULT_FILE, ERROR_FILE = "job.pkl", "result.pkl", "error.pkl"
# the child imports from the driver's sys.path (as multiprocessing's spawn does), then runs `child_main`
_ENTRY = ("import json, sys; sys.path[:] = json.loads(sys.argv[4]); "
          "from medmill.builders.streaming.dedup_child import child_main; "
          "sys.exit(child_main(sys.argv[1], sys.argv[2], int(sys.argv[3])))")
GLOBAL_STEP = "medmill.builders.streaming.dedup:global_step"
log = logging.getLogger(__name__)


def wants_child(config: DedupConfig, records: int) -> bool:
    """Run the global step in a fresh process: only in a Ray driver (elsewhere it forks its helpers
    itself), and only when the step would use helpers at all."""
    if not in_ray_driver() or records < CHILD_MIN_RECORDS:
        return False
    return decision_workers(on_this_machine(config), max(records, PARALLEL_MIN_DOCS)) > 1


def on_this_machine(config: DedupConfig) -> DedupConfig:
    """On Ray `--workers` counts the cluster's workers, but the step's helpers fork on the driver's
    machine: at most its cores (the result does not depend on how many)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return replace(config, workers=min(config.workers or cores, cores))


def run_in_child(job: dict[str, Any], job_dir: Path, target: str = GLOBAL_STEP) -> Any:
    """`target(**job)` ("module:function"; default `global_step` in streaming/dedup.py) in a fresh
    interpreter: its result, or its error raised here. `job` is written to `job_dir` and emptied, so
    the driver holds none of it while the child runs (the caller drops its own references)."""
    job_dir = Path(job_dir)
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    try:
        with open(job_dir / JOB_FILE, "wb") as f:
            pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
        job.clear()  # the caller's arrays are now only on disk (the caller drops its own references)
        code = _run(job_dir, target)
        return _outcome(job_dir, code)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _run(job_dir: Path, target: str) -> int:
    """Start the child, wait for it; its whole process group is killed before it is reaped, so no
    helper outlives it (Ctrl-C here, a crash there)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _ENTRY, str(job_dir), target, str(os.getpid()), json.dumps(sys.path)],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: its pid stays its group's
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    # usage: the child's and its reaped helpers' (peak RSS: the largest of them)
    log.debug("dedup process: %.1f s wall, %.1f s CPU (with its helpers), peak RSS %.0f MB", time.perf_counter() - t0,
              usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
    return proc.returncode


def _outcome(job_dir: Path, code: int) -> Any:
    if code == 0 and (job_dir / RESULT_FILE).exists():
        with open(job_dir / RESULT_FILE, "rb") as f:
            return pickle.load(f)
    if (job_dir / ERROR_FILE).exists():
        with open(job_dir / ERROR_FILE, "rb") as f:
            blob, text, trace = pickle.load(f)
        try:
            error = pickle.loads(blob)
        except Exception:  # noqa: BLE001 (an exception that does not unpickle comes back as its text)
            error = RuntimeError(text)
        if isinstance(error, (MedmillError, OSError, KeyboardInterrupt)):
            raise error from None  # as the CLI reports them in-process: one line
        error.add_note(f"raised in the dedup decision's process:\n{trace}")
        raise error
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    raise MedmillError(f"the dedup decision's process {how} (out of memory?)")


def child_main(job_dir: str, target: str, parent: int) -> int:
    """The child: run `target` on the job file, pickle back its result or its error."""
    _die_with(parent)
    import importlib

    import pyarrow as pa

    from medmill.builders.core.malloc import fixed_mmap_threshold

    # the allocators the streamed run's driver uses (builders/streaming/run.py)
    pa.set_memory_pool(pa.system_memory_pool())
    fixed_mmap_threshold()
    where = Path(job_dir)
    try:
        with open(where / JOB_FILE, "rb") as f:
            job = pickle.load(f)
        (where / JOB_FILE).unlink()
        module, name = target.split(":")
        result = getattr(importlib.import_module(module), name)(**job)
        del job
        _dump(result, where / RESULT_FILE)
        return 0
    except BaseException as e:  # noqa: BLE001 (every error goes back to the driver, which raises it)
        try:
            blob = pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 (an exception that does not pickle goes back as its text)
            blob = b""
        _dump((blob, f"{type(e).__name__}: {e}", traceback.format_exc()), where / ERROR_FILE)
        return 1


def _dump(value: Any, path: Path) -> None:
    """Written under a temporary name, then renamed: the driver never reads half a file."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _die_with(parent: int) -> None:
    """When the driver dies, the child and its helpers (its process group) go too. On Linux the kernel
    sends SIGTERM at the driver's death; the handler kills the group. Elsewhere the driver's own
    cleanup (`_run`) is all there is."""
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    # not in its forked helpers: a pool that breaks stops its other workers with SIGTERM
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the driver died before the line above took effect
        os.killpg(0, signal.SIGKILL)
