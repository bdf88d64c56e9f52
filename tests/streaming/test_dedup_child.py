"""The global dedup step's fresh process (`dedup_child.py`, what a Ray driver uses since it must not
fork): the child forks its own helpers, hands back its result, its errors arrive as the driver would
raise them (a MedmillError as one line, no traceback printed), and an interrupted or killed driver
leaves no process of it running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medmill.builders.streaming.dedup_child import run_in_child
from medmill.schemas.errors import MedmillError

REPO = Path(__file__).resolve().parents[2]
HERE = "tests.streaming.test_dedup_child"


def _pids(pause: float) -> tuple[int, list[int]]:
    """(this process, the helpers fork_imap ran on)."""
    from medmill.builders.curation.dedup_pairs import fork_imap

    return os.getpid(), sorted(set(fork_imap(lambda _: (time.sleep(pause), os.getpid())[1], range(6), 2)))


class _TwoArgError(Exception):
    def __init__(self, what: str, where: str) -> None:  # pickles, but does not unpickle
        super().__init__(f"{what} at {where}")


def _fail(kind: str) -> None:
    if kind == "two-args":
        raise _TwoArgError("odd", "x")
    if kind == "medmill":
        raise MedmillError("dedup index /x is unreadable: bad part")
    if kind == "value":
        raise ValueError("a bug")
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_child_forks_its_own_helpers_and_hands_back_its_result(tmp_path):
    child, helpers = run_in_child({"pause": 0.2}, tmp_path / "job", f"{HERE}:_pids")
    assert child != os.getpid()
    assert len(helpers) == 2 and child not in helpers and os.getpid() not in helpers
    assert not (tmp_path / "job").exists(), "the job files are removed"


def test_only_a_ray_driver_uses_the_child_with_at_most_this_machines_cores(monkeypatch):
    """`--workers 64` on Ray counts the cluster's workers, not processes to fork on the driver; small
    inputs and one core fork no helpers, so they stay in the driver."""
    import medmill.builders.streaming.dedup_child as child
    from medmill.builders.curation.dedup import DedupConfig

    cores = len(os.sched_getaffinity(0))
    assert child.on_this_machine(DedupConfig(workers=64)).workers == cores
    assert child.on_this_machine(DedupConfig(workers=0)).workers == cores
    assert child.on_this_machine(DedupConfig(workers=1)).workers == 1
    for ray_driver in (False, True):
        monkeypatch.setattr(child, "in_ray_driver", lambda ray_driver=ray_driver: ray_driver)
        assert child.wants_child(DedupConfig(workers=2), 10**6) == (ray_driver and cores > 1)
        assert not child.wants_child(DedupConfig(workers=2), child.CHILD_MIN_RECORDS - 1)
        assert not child.wants_child(DedupConfig(workers=1), 10**6)


def test_a_medmill_error_in_the_child_is_raised_here_as_its_one_line(tmp_path, capfd):
    with pytest.raises(MedmillError) as got:
        run_in_child({"kind": "medmill"}, tmp_path / "job", f"{HERE}:_fail")
    assert str(got.value) == "dedup index /x is unreadable: bad part"
    assert not getattr(got.value, "__notes__", None)
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow  # ~0.7 s: a fresh interpreter
def test_another_error_in_the_child_keeps_its_type_and_the_childs_traceback(tmp_path):
    with pytest.raises(ValueError, match="a bug") as got:
        run_in_child({"kind": "value"}, tmp_path / "job", f"{HERE}:_fail")
    note = "\n".join(got.value.__notes__)
    assert "raised in the dedup decision's process" in note and "in _fail" in note


@pytest.mark.slow  # ~0.7 s: a fresh interpreter
def test_an_error_that_does_not_unpickle_comes_back_as_its_text(tmp_path):
    with pytest.raises(RuntimeError) as got:
        run_in_child({"kind": "two-args"}, tmp_path / "job", f"{HERE}:_fail")
    assert str(got.value) == "_TwoArgError: odd at x"
    assert "in _fail" in "\n".join(got.value.__notes__)


def test_a_killed_child_is_a_one_line_error(tmp_path):
    with pytest.raises(MedmillError) as got:
        run_in_child({"kind": "kill"}, tmp_path / "job", f"{HERE}:_fail")
    assert str(got.value) == "the dedup decision's process was killed by SIGKILL (out of memory?)"


def _hang(out: str) -> None:
    """Fork two helpers that never finish; every process leaves its pid in `out`."""
    from medmill.builders.curation.dedup_pairs import fork_imap

    Path(out, f"child-{os.getpid()}").touch()

    def helper(_: int) -> None:
        Path(out, f"helper-{os.getpid()}").touch()
        time.sleep(120)

    list(fork_imap(helper, range(2), 2))


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped running
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, *(pytest.param(h, marks=pytest.mark.slow) for h in (signal.SIGINT, signal.SIGTERM))])  # ~1 s each
def test_a_stopped_driver_leaves_no_process_of_the_step_running(tmp_path, how):
    """Ctrl-C (SIGINT: the driver kills the child's process group), kill and kill -9 (the child's
    parent-death signal: it kills its group)."""
    out = tmp_path / "pids"
    out.mkdir()
    code = ("import sys; from pathlib import Path; from medmill.builders.streaming.dedup_child import run_in_child; "
            f"run_in_child({{'out': sys.argv[1]}}, Path(sys.argv[2]), '{HERE}:_hang')")
    driver = subprocess.Popen([sys.executable, "-c", code, str(out), str(tmp_path / "job")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(list(out.iterdir())) < 3 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        names = [p.name for p in out.iterdir()]
        assert len(names) == 3, (names, driver.poll())
        pids = [int(n.split("-")[1]) for n in names]
        assert all(_running(p) for p in pids)
        driver.send_signal(how)
        driver.wait(timeout=20)
        deadline = time.monotonic() + 10
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _running(p)], f"left running after {how.name}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
