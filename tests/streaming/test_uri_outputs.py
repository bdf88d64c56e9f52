"""Issue 16: every build, `filter` and `dedup` writes to a local path or any pyarrow filesystem URI.

A URI build equals the local build of the same inputs byte for byte (the manifest's and card's command
line aside, which names the out); a failed build or upload leaves the dataset at the URI as it was; an
LLM build to a URI keeps its request cache on this machine, so a failed run resumes without paying
again; --out is checked against the inputs the same way for every command, URIs included."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.builders.core.validate import validate_dir
from medmill.builders.streaming import outputs
from medmill.builders.streaming.outputs import STAGING_PREFIX, local_state_dir
from medmill.schemas.errors import MedmillError
from tests.book_lit_fake_llm import respond as book_lit_model
from tests.core.test_hardening_outputs import _kg_without_facts
from tests.llm_server import FakeLLMServer
from tests.self_instruct.fake_model import self_instruct_model, write_seeds
from tests.streaming.test_ray_executor import ray_cluster  # noqa: F401  (the session's local Ray cluster)

if not any(c.name == "build-kg-qa" for c in medmill.cli.app.registered_commands):
    medmill.cli._register()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cli(*args):
    return CliRunner().invoke(medmill.cli.app, [str(a) for a in args])


def ok(*args):
    result = cli(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def local_files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def fs_files(fs: pafs.FileSystem, root: str) -> dict[str, bytes]:
    got = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                got[info.path[len(root) + 1:]] = f.read()
    return got


def comparable(files: dict[str, bytes], out: str) -> dict[str, bytes]:
    """The files of a dataset dir with the out path in the command line replaced by OUT, and the
    manifest without wall-clock figures; anything else must be equal byte for byte."""
    result = {}
    for name, data in files.items():
        if name == "manifest.json":
            m = json.loads(data)
            m.pop("timings")
            m.get("usage", {}).pop("wall_time_s", None)
            m["command"] = m["command"].replace(out, "OUT")
            data = json.dumps(m, ensure_ascii=False, sort_keys=True).encode()
        elif name == "README.md":
            data = re.sub(rb"wall_time_s=[0-9.]+", b"", data.replace(out.encode(), b"OUT"))
        result[name] = data
    return result


def same_dataset(uri_files: dict[str, bytes], uri: str, local: Path) -> None:
    mine = local_files(local)
    mine.pop("llm_cache.sqlite", None)  # a local out holds its request cache; a URI never gets one
    assert sorted(uri_files) == sorted(mine)
    assert any(name.startswith("data/") for name in mine)
    want, got = comparable(mine, str(local)), comparable(uri_files, uri)
    assert got == want, [n for n in want if got.get(n) != want[n]]


# ---- every command: a file:// URI equals a local build -------------------------------------------------


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    from medmill.builders.publish import plots
    from tests.conftest import _plots_stood_in

    d = tmp_path_factory.mktemp("sft") / "kg_qa"
    with pytest.MonkeyPatch.context() as mp:  # module scope comes before conftest's per-test stand-in
        mp.setattr(plots, "write_plots", _plots_stood_in(plots))
        ok("build-kg-qa", EXAMPLES / "kg", "--out", d, "--val-size", "0.1")
    return d


def _llm(server: FakeLLMServer) -> list:
    return ["--llm-base-url", server.base_url, "--llm-model", "fake", "--workers", "1"]


# command -> (responder or None, args before --out given the sft dir, a tmp dir and the server)
COMMANDS: dict[str, tuple[Callable | None, Callable[[Path, Path, FakeLLMServer], list]]] = {
    "build-kg-qa": (None, lambda sft, tmp, srv: ["build-kg-qa", EXAMPLES / "kg", "--val-size", "0.1"]),
    "build-tasks": (None, lambda sft, tmp, srv: ["build-tasks", "--task", "mcq", EXAMPLES / "kg"]),
    "build-pt": (None, lambda sft, tmp, srv: ["build-pt", EXAMPLES / "texts", "--val-size", "0.1"]),
    "build-prefs": (None, lambda sft, tmp, srv: ["build-prefs", sft]),
    "build-dialogue": (None, lambda sft, tmp, srv: ["build-dialogue", sft]),
    "filter": (None, lambda sft, tmp, srv: ["filter", sft]),
    "dedup": (None, lambda sft, tmp, srv: ["dedup", sft]),
    "build-book-qa": (book_lit_model, lambda sft, tmp, srv: ["build-book-qa", EXAMPLES / "texts", "--limit-chunks", "3", *_llm(srv)]),
    "build-lit-qa": (book_lit_model, lambda sft, tmp, srv: ["build-lit-qa", EXAMPLES / "literature" / "conclusions.jsonl", *_llm(srv)]),
    "build-self-instruct": (self_instruct_model, lambda sft, tmp, srv: [
        "build-self-instruct", "--seeds", write_seeds(tmp / "seeds.json"), "--num", "6", "--per-request", "3",
        "--round-size", "3", "--no-dedup", *_llm(srv)]),
}
SLOW = {"build-pt", "build-prefs", "build-book-qa", "build-self-instruct", "build-tasks", "build-dialogue"}  # the fast lane keeps one of each kind


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in COMMANDS])
def test_every_build_filter_and_dedup_writes_to_a_uri_what_it_writes_locally(command, sft_dir, tmp_path):
    responder, make_args = COMMANDS[command]
    with FakeLLMServer(**({"responder": responder} if responder else {})) as server:
        args = make_args(sft_dir, tmp_path, server)
        local, remote = tmp_path / "local", tmp_path / "remote"
        uri = f"file://{remote}"
        ok(*args, "--out", local)
        result = ok(*args, "--out", uri)
    assert uri in result.output  # the summary names the URI, not a staging dir
    assert validate_dir(remote).ok
    same_dataset(local_files(remote), uri, local)
    cache = local_state_dir(uri) / "llm_cache.sqlite"  # the URI's request cache stays on this machine
    assert cache.is_file() == (responder is not None) == ("request cache (local)" in result.output)
    assert not list(tmp_path.glob(".medmill-*")) and not list(remote.glob(".medmill-*"))


# ---- a filesystem that is not the local one ------------------------------------------------------------


@pytest.fixture
def memory_fs(monkeypatch):
    """`memory://ROOT/...` URIs on an in-memory fsspec filesystem behind pyarrow's PyFileSystem: no local
    paths, and (like an object store) nothing there but what was uploaded."""
    from fsspec.implementations.memory import MemoryFileSystem

    mem = MemoryFileSystem()
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(mem))
    real = outputs.filesystem

    def resolve(uri: str):
        return (fs, "/" + uri.split("://", 1)[1].strip("/")) if uri.startswith("memory://") else real(uri)

    monkeypatch.setattr(outputs, "filesystem", resolve)
    yield fs
    mem.rm("/", recursive=True) if mem.exists("/") else None
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


def test_a_non_local_filesystem_gets_the_same_bytes_stale_files_go_foreign_ones_stay(memory_fs, tmp_path):
    fs = memory_fs
    uri = "memory://bucket/runs/kg_qa"
    ok("build-kg-qa", EXAMPLES / "kg", "--out", uri, "--val-size", "0.1")
    ok("build-kg-qa", EXAMPLES / "kg", "--out", tmp_path / "kg_qa", "--val-size", "0.1")
    same_dataset(fs_files(fs, "/bucket/runs/kg_qa"), uri, tmp_path / "kg_qa")

    # a file of the user's beside the dataset, and an upload a killed run left behind
    with fs.open_output_stream("/bucket/runs/kg_qa/NOTES.md") as f:
        f.write(b"mine")
    fs.create_dir(f"/bucket/runs/kg_qa/{STAGING_PREFIX}killed")
    with fs.open_output_stream(f"/bucket/runs/kg_qa/{STAGING_PREFIX}killed/manifest.json") as f:
        f.write(b"{}")
    ok("build-kg-qa", EXAMPLES / "kg", "--out", tmp_path / "no_val", "--val-size", "0")  # no validation split...
    ok("build-kg-qa", EXAMPLES / "kg", "--out", uri, "--val-size", "0")  # ...rebuilt over the old one
    files = fs_files(fs, "/bucket/runs/kg_qa")
    assert files.pop("NOTES.md") == b"mine"
    assert not any(n.startswith("data/validation") for n in files)  # the old split's shard is gone
    same_dataset(files, uri, tmp_path / "no_val")  # and so is the killed upload


def test_dedup_to_a_non_local_filesystem_equals_the_local_run(memory_fs, sft_dir, tmp_path):
    uri = "memory://bucket/dedup"
    ok("dedup", sft_dir, "--out", uri)
    ok("dedup", sft_dir, "--out", tmp_path / "dedup")
    files = fs_files(memory_fs, "/bucket/dedup")
    assert "clusters.jsonl" in files
    same_dataset(files, uri, tmp_path / "dedup")


def test_filter_in_memory_to_a_non_local_filesystem_equals_the_streamed_local_run(memory_fs, sft_dir, tmp_path):
    uri = "memory://bucket/filtered"
    ok("filter", sft_dir, "--out", uri, "--executor", "memory")  # the reference path writes URIs too
    ok("filter", sft_dir, "--out", tmp_path / "filtered")
    same_dataset(fs_files(memory_fs, "/bucket/filtered"), uri, tmp_path / "filtered")


# ---- failures leave the dataset at the URI as it was ---------------------------------------------------


def test_a_failed_build_leaves_the_previous_dataset_at_the_uri_and_its_rejects_beside_it(sft_dir, tmp_path):
    remote = tmp_path / "bucket" / "D"
    uri = f"file://{remote}"
    ok("build-kg-qa", EXAMPLES / "kg", "--out", uri, "--val-size", "0.1")
    before = local_files(remote)

    result = cli("build-kg-qa", _kg_without_facts(tmp_path), "--out", uri)
    assert isinstance(result.exception, MedmillError), result.output
    message = str(result.exception)
    assert "no records survived" in message and f"{uri} was left as it was" in message
    assert f"its rejects are in {uri}.rejects.jsonl" in message and ".medmill-out-" not in message
    assert local_files(remote) == before  # not one byte changed
    rows = (tmp_path / "bucket" / "D.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(r)["reason"] for r in rows} == {"no_usable_facts"} and len(rows) == 2

    ok("build-kg-qa", EXAMPLES / "kg", "--out", uri, "--val-size", "0.1")  # success clears the stale report
    assert not (tmp_path / "bucket" / "D.rejects.jsonl").exists()


def test_a_failed_upload_leaves_the_previous_dataset_at_the_uri(sft_dir, tmp_path, monkeypatch):
    remote = tmp_path / "D"
    uri = f"file://{remote}"
    ok("filter", sft_dir, "--out", uri)
    before = local_files(remote)
    real = pafs.copy_files

    def copy_then_fail(source, destination, **kw):
        real(source, destination, **kw)  # most of the bytes arrived...
        raise OSError("connection reset by peer")  # ...then the network went away

    monkeypatch.setattr(pafs, "copy_files", copy_then_fail)
    result = cli("dedup", sft_dir, "--out", uri)
    assert isinstance(result.exception, MedmillError), result.output
    assert str(result.exception) == f"cannot write the dataset dir to {uri}: connection reset by peer"
    assert local_files(remote) == before  # neither the dataset nor a half upload changed anything there


@pytest.mark.parametrize("command", ["build-kg-qa", "filter"])
def test_an_unusable_uri_is_a_one_line_error_before_anything_is_built(command, sft_dir, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(outputs, "publish", lambda *a: built.append(a))
    source = EXAMPLES / "kg" if command == "build-kg-qa" else sft_dir
    (tmp_path / "a_file").write_text("x")
    for uri, message in ((f"nosuch://bucket/{command}", f"cannot use --out nosuch://bucket/{command}: Unrecognized filesystem type"),
                         (f"file://{tmp_path / 'a_file'}", f"--out file://{tmp_path / 'a_file'} exists and is not a directory")):
        result = cli(command, source, "--out", uri)
        assert isinstance(result.exception, MedmillError), result.output
        assert str(result.exception).startswith(message) and "\n" not in str(result.exception)
    assert built == [] and not list(tmp_path.glob("*.rejects.jsonl"))


# ---- LLM builds to a URI resume from a local request cache ---------------------------------------------


def test_an_llm_build_to_a_uri_resumes_without_paying_again(tmp_path):
    uri = f"file://{tmp_path / 'remote' / 'qa'}"
    answered = []

    def model_that_loses_its_key(body):
        answered.append(1)
        if len(answered) == 6:  # the key is revoked part way: later calls get 401, the build stops
            server.api_key = "revoked"
        return book_lit_model(body)

    with FakeLLMServer(responder=model_that_loses_its_key) as server:
        args = ["build-book-qa", EXAMPLES / "texts", "--limit-chunks", "3", "--out", uri,
                "--llm-base-url", server.base_url, "--llm-model", "fake", "--workers", "1", "--concurrency", "2"]
        failed = cli(*args)
        assert isinstance(failed.exception, MedmillError) and "401" in str(failed.exception), failed.output
        assert not (tmp_path / "remote" / "qa" / "manifest.json").exists()
        paid_first = sum(server.served.values())
        assert paid_first >= 6
        server.api_key = None
        ok(*args)
        paid = sum(server.served.values())
        manifest = json.loads((tmp_path / "remote" / "qa" / "manifest.json").read_text())
        assert manifest["usage"]["cache_hits"] >= paid_first and manifest["usage"]["calls_sent"] == paid - paid_first
        ok(*args)  # a re-run pays nothing
        assert sum(server.served.values()) == paid
        assert server.duplicates() == {}  # every request paid once over the three runs
    assert (local_state_dir(uri) / "llm_cache.sqlite").is_file()
    assert not (tmp_path / "remote" / "qa" / "llm_cache.sqlite").exists()


def test_the_cache_dir_of_a_uri_is_stable_per_uri_and_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDMILL_CACHE_DIR", str(tmp_path / "c"))
    a = local_state_dir("s3://bucket/runs/kg")
    assert a == local_state_dir("s3://bucket/runs/kg/") == local_state_dir("s3:/bucket/runs/kg")  # as a CLI Path spells it
    assert a.parent == tmp_path / "c" / "outputs" and a.name.startswith("bucket_runs_kg-")
    assert a != local_state_dir("gs://bucket/runs/kg") and local_state_dir(tmp_path / "x") is None
    monkeypatch.delenv("MEDMILL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local_state_dir("s3://bucket/runs/kg") == tmp_path / "xdg" / "medmill" / "outputs" / a.name


# ---- --out against the inputs: one rule for every command ----------------------------------------------


@pytest.mark.parametrize("command", ["build-prefs", "build-dialogue", "build-pt", "filter", "dedup"])
@pytest.mark.parametrize("where", ["same", "inside"])
def test_an_out_uri_that_is_or_is_inside_an_input_dataset_dir_is_refused(command, where, sft_dir):
    target = sft_dir if where == "same" else sft_dir / "sub"
    before = local_files(sft_dir)
    result = cli(command, sft_dir, "--out", f"file://{target}")
    assert isinstance(result.exception, MedmillError), result.output
    message = str(result.exception)
    assert message.startswith(f"--out {target} ") and str(sft_dir) in message and "\n" not in message
    assert local_files(sft_dir) == before


@pytest.mark.parametrize("command", ["build-pt", "build-dialogue", *(pytest.param(c, marks=pytest.mark.slow) for c in ("build-kg-qa", "build-tasks"))])
def test_an_out_inside_a_raw_input_folder_is_built_and_never_read_back(command, sft_dir, tmp_path):
    """Raw input folders (not dataset dirs) may hold the out dir: every reader skips it and any other
    dataset dir found there, so each rebuild reads the same inputs (here through a file:// URI: the
    readers skip its local path). build-dialogue, which reads sft dirs named as inputs, used to read
    those found inside a folder too."""
    folder = tmp_path / "in"
    if command == "build-pt":
        shutil.copytree(EXAMPLES / "texts", folder)
    elif command == "build-dialogue":
        folder.mkdir()
        rows = [{"instruction": f"我最近第{i}天头痛，伴有恶心，需要做什么检查？", "output": f"建议先测量血压，第{i}天仍头痛请到神经内科就诊，必要时做头颅CT。"} for i in range(12)]
        (folder / "dialogues.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    else:
        shutil.copytree(EXAMPLES / "kg", folder)
    shutil.copytree(sft_dir, folder / "earlier_build")  # someone's build kept beside the raw files
    extra = ["--task", "mcq"] if command == "build-tasks" else []
    out = folder / "built"
    runs = []
    for _ in range(2):
        ok(command, *extra, folder, "--out", f"file://{out}")
        runs.append(json.loads((out / "manifest.json").read_text()))
    assert runs[0]["records_total"] == runs[1]["records_total"] > 0
    assert runs[0]["rejects_total"] == runs[1]["rejects_total"]
    assert [i["path"] for i in runs[0]["inputs"]] == [i["path"] for i in runs[1]["inputs"]]
    assert not any("built" in i["path"] or "earlier_build" in i["path"] for run in runs for i in run["inputs"])
    assert [run["counters"]["read.dataset_dirs_skipped"] for run in runs] == [1, 2]


# ---- on Ray: the driver writes the URI, the workers reach the local request cache through its actor ------


@pytest.mark.slow  # starts a local Ray cluster
@pytest.mark.usefixtures("ray_cluster")
def test_ray_llm_build_and_filter_to_a_uri_equal_the_local_ones_and_resume_from_the_local_cache(tmp_path):
    from medmill.builders.core.run import run_build
    from medmill.builders.kg_qa.build import KGQABuilder, KGQAConfig
    from medmill.builders.streaming.executors import RayExecutor
    from medmill.commands._curate_dirs import run_over_dirs
    from medmill.commands._run_options import RunOptions
    from tests.kg_qa.test_kg_qa_llm import scenario_model, write_kg
    from tests.streaming.test_streaming import FILTER

    kg = write_kg(tmp_path / "kg.jsonl")
    with FakeLLMServer(responder=scenario_model) as server:
        cfg = {"inputs": [kg], "mode": "llm", "seed": 3, "llm_qa": {"per_entity": 3}, "curation": {"dedup": False},
               "llm": {"base_url": server.base_url, "model": "fake-med", "concurrency": 4}, "val_size": 0.1}
        run_build(KGQABuilder(), KGQAConfig(out=tmp_path / "local", **cfg), max_shard_bytes=4_000)
        calls = len(server.bodies())
        uri = f"file://{tmp_path / 'remote'}"
        run_build(KGQABuilder(), KGQAConfig(out=uri, **cfg), executor=RayExecutor(2, batch_items=5), max_shard_bytes=4_000)
        assert len(server.bodies()) == 2 * calls  # its own cache: every call once
        same_dataset(local_files(tmp_path / "remote"), uri, tmp_path / "local")
        run_build(KGQABuilder(), KGQAConfig(out=uri, **cfg), executor=RayExecutor(2, batch_items=5), max_shard_bytes=4_000)
        assert len(server.bodies()) == 2 * calls  # again into the URI: answered from the local cache
    assert (local_state_dir(uri) / "llm_cache.sqlite").is_file()

    filtered = f"file://{tmp_path / 'filtered'}"
    run_over_dirs("filter", [tmp_path / "local"], filtered, FILTER, {}, run=RunOptions("ray", 2, batch_rows=50))
    run_over_dirs("filter", [tmp_path / "local"], tmp_path / "filtered_local", FILTER, {}, run=RunOptions("local", 2, batch_rows=50))
    same_dataset(local_files(tmp_path / "filtered"), filtered, tmp_path / "filtered_local")
