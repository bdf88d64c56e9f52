"""Shared fixtures. Tests that read ../shared/samples skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLES = REPO.parent / "shared" / "samples"
EXAMPLES = REPO / "examples"


def pytest_configure(config) -> None:
    _share_the_cores_among_xdist_workers()


def pytest_collection_finish(session) -> None:
    """Move what collection built (every module the tests import: torch, pyarrow, matplotlib, ...: a few
    million objects that live until the end) out of the cyclic collector's sight. Each full collection
    walked all of them again (~0.2 s each, dozens per run, and five at the end of the session); they
    are never garbage, so nothing is lost."""
    import gc

    gc.freeze()


def _share_the_cores_among_xdist_workers() -> None:
    """Under `pytest -n N`, worker i may use only its share of the cores (cores i, i+N, ...).

    Builds default to `--workers 0` = every core this process may use. Without this, each of the N
    workers would start a process pool of all the machine's cores for every build: on 2 cores, 2 xdist
    workers x 2 forked processes per map stage, oversubscribed, and about 0.5 s of CPU per build lost
    to forking a large test process (~180 pools in the fast lane). With its share, a worker on a 2-core
    machine has one core, so a build's default is what it is on a one-core machine: the steps run in
    the process. The pool itself stays tested where tests ask for `--workers 2` (tests/streaming,
    tests/cli/test_build_options.py)."""
    import os

    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit()) or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    index, count = int(worker[2:]), int(count)
    share = cores[index % len(cores) :: count] or cores
    os.sched_setaffinity(0, share)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` hands out whole test files (xdist's loadscope; files with the most tests first) instead of single tests.

    Many files build a dataset dir once in a module-scoped fixture (an example build, a set of dirs
    with cards and plots) and read it in several tests; spread test by test over two workers, each
    worker built it again (about 11 s of CPU in the fast lane). A file's tests still run in their
    order; balance holds because there are ~100 files and a worker takes the next one when it is
    almost done with its own."""
    from xdist.scheduler import LoadScopeScheduling

    return LoadScopeScheduling(config, log)


@pytest.fixture(autouse=True, scope="session")
def _medmill_cache_dir(tmp_path_factory):
    """Builds to a URI keep their LLM request cache under medmill's user cache dir
    (builders/streaming/outputs.py): in tests a temporary one, never the real ~/.cache/medmill."""
    import os

    before = os.environ.get("MEDMILL_CACHE_DIR")
    os.environ["MEDMILL_CACHE_DIR"] = str(tmp_path_factory.mktemp("medmill-cache"))
    yield
    if before is None:
        os.environ.pop("MEDMILL_CACHE_DIR", None)
    else:
        os.environ["MEDMILL_CACHE_DIR"] = before


@pytest.fixture
def samples_dir() -> Path:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present")
    return SHARED_SAMPLES


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(scope="module")
def one_torch_thread():
    """Model tests run two processes on two cores beside other jobs: one torch thread each avoids thrashing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def llm_server():
    """A started local OpenAI-compatible server (tests/llm_server.py); set `.responder`, `.faults`,
    `.latency` as needed; `.base_url` goes to LLMSettings(base_url=...)."""
    from tests.llm_server import FakeLLMServer

    with FakeLLMServer() as server:
        yield server


# ---- card plots: drawn by the tests of plotting, stood in for elsewhere --------------------------------
# Drawing a card's PNGs costs about a third of a second of CPU per build (matplotlib text layout with a
# CJK font): with ~100 distinct builds it was the largest single cost of the fast lane. Plots are a pure
# function of the dataset statistics, and tests/publish checks what they draw (tests marked `fresh_plots`:
# pixels, glyphs, the files a build links). Every other test gets, for each plot the card would have
# (`plots.plot_plan`: same titles, same file names), a small file whose bytes are a digest of those
# statistics: two builds with the same statistics still get the same bytes, and builds whose statistics
# differ get different ones, so tests that compare two dataset dirs byte for byte keep their meaning.

def _plots_stood_in(plots):
    import hashlib
    import pickle

    def write_plots(stats, out_dir: Path, max_category_plots: int = 3) -> list[tuple[str, str]]:
        key = hashlib.sha256(pickle.dumps((stats, max_category_plots), protocol=4)).hexdigest()
        written = []
        for title, rel, _draw in plots.plot_plan(stats, max_category_plots):
            path = Path(out_dir) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"medmill test stand-in for {rel}: statistics {key}\n".encode())
            written.append((title, rel))
        return written

    return write_plots


@pytest.fixture(autouse=True)
def _plots_drawn_only_where_tested(request, monkeypatch):
    if request.node.get_closest_marker("fresh_plots"):
        return
    from medmill.builders.publish import plots

    monkeypatch.setattr(plots, "write_plots", _plots_stood_in(plots))


# ---- the click command behind `medmill` is built once per set of registered commands ----------------
# typer turns the app into a click command on every call (`app()`, CliRunner.invoke): ~40 ms of
# signature and type-hint inspection for 19 commands, paid again by hundreds of in-process runs. The
# result depends only on what is registered, so it is kept while the registrations stay the same.
@pytest.fixture(autouse=True, scope="session")
def _click_command_built_once():
    import typer.main
    import typer.testing

    real = typer.main.get_command
    built: dict[tuple, tuple[tuple, object]] = {}

    def get_command(app):
        registered = (app, *app.registered_commands, "|", *app.registered_groups, "|", app.registered_callback)
        key = tuple(map(id, registered))
        if key not in built:
            built[key] = (registered, real(app))  # the references keep the ids in the key from being reused
        return built[key][1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.main, "get_command", get_command)
        mp.setattr(typer.testing, "_get_command", get_command)
        yield
