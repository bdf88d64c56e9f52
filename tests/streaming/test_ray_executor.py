"""`--executor ray` gives the dataset dir the local executor gives (same survivors, representatives,
splits, rejects: sha256 of every file) for a filter run, a dedup run, a KG-QA build and a book-QA build
through the test LLM server, on a local 2-CPU Ray cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._curate_dirs import run_over_dirs
from medmill.commands._run_options import RunOptions
from tests.streaming.test_streaming import FILTER, dedup_steps, digest, make_input

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ray_cluster():
    # imported here, not at module level: collecting this file for the fast lane (where its tests are
    # deselected) would otherwise cost every xdist worker the 0.6 s import of ray
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-inputs")
    return [make_input(root / "a", "sft", 11, {"train": 500, "validation": 50}, broken=True),
            make_input(root / "b", "sft", 12, {"train": 300, "test": 30})]


def test_ray_filter_equals_local(ray_cluster, dirs, tmp_path):
    outs = {}
    for ex in ("local", "ray"):
        outs[ex] = tmp_path / ex
        run_over_dirs("filter", dirs, outs[ex], FILTER, {}, run=RunOptions(ex, 2, batch_rows=150, max_shard_bytes=30_000))
    assert digest(outs["ray"]) == digest(outs["local"])
    assert len(list((outs["ray"] / "data").glob("train-*"))) > 1


def test_ray_dedup_equals_local(ray_cluster, dirs, tmp_path):
    settings = CurationSettings(validate_records=False, quality=False, pii=False, safety=False, dedup=False)
    outs = {}
    for ex in ("local", "ray"):
        outs[ex] = tmp_path / ex
        run_over_dirs("dedup", dirs, outs[ex], settings, {}, extra_steps=dedup_steps, run=RunOptions(ex, 2, batch_rows=128))
    assert digest(outs["ray"]) == digest(outs["local"])
    assert "near_duplicate" in (outs["ray"] / "rejects.jsonl").read_text(encoding="utf-8")


def _dedup_steps_with_index(index: Path):
    def steps(kind: str) -> list:
        from medmill.builders.curation.dedup import DedupConfig
        from medmill.builders.curation.inputs import origin_of
        from medmill.builders.curation.stages import DedupStep
        from medmill.builders.curation.text import check_fields

        return [DedupStep(check_fields(kind, []), DedupConfig(workers=2), index, origin_of, clusters_file=True, kind=kind)]

    return steps


def test_ray_dedup_decides_in_a_fresh_process_and_equals_local(ray_cluster, dirs, tmp_path, monkeypatch):
    """A Ray driver must not fork, so its global dedup step (decision, rejects, clusters) runs in a fresh
    process that may (`dedup_child.py`): the driver's own `decide` is made to fail, so this passes only
    if the decision ran elsewhere. Against an index too: a first run fills it, a second is deduplicated
    against it; both dataset dirs and the index equal the local executor's."""
    import medmill.builders.streaming.dedup as stream_dedup

    settings = CurationSettings(validate_records=False, quality=False, pii=False, safety=False, dedup=False)
    got = {}
    for ex in ("local", "ray"):
        if ex == "ray":
            # these inputs are small, and under xdist this process may have one core: the child is used
            # whatever `wants_child` says (tests/streaming/test_dedup_child.py tests when it is)
            monkeypatch.setattr(stream_dedup, "wants_child", lambda config, records: True)

            def in_the_driver(*args, **kwargs):
                raise AssertionError("the dedup decision ran in the Ray driver")

            monkeypatch.setattr(stream_dedup, "decide", in_the_driver)
        steps = _dedup_steps_with_index(tmp_path / f"index-{ex}")
        for k, d in enumerate(dirs):
            run_over_dirs("dedup", [d], tmp_path / f"{ex}-{k}", settings, {}, extra_steps=steps, run=RunOptions(ex, 2, batch_rows=128))
        got[ex] = [digest(tmp_path / f"{ex}-{k}") for k in range(len(dirs))] + [digest(tmp_path / f"index-{ex}")]
        assert not list((tmp_path / f"{ex}-1").glob(".medmill-*")), "work files left behind"
    assert got["ray"] == got["local"]
    assert '"in_index": true' in (tmp_path / "ray-1" / "clusters.jsonl").read_text(encoding="utf-8")


def _kg_build(out, *flags):
    from typer.testing import CliRunner

    from medmill.cli import app

    examples = Path(__file__).resolve().parents[2] / "examples" / "kg"
    r = CliRunner().invoke(app, ["build-kg-qa", str(examples), "--out", str(out), "--val-size", "0.2", *flags])
    assert r.exit_code == 0, r.output + repr(r.exception)


def test_ray_kg_qa_build_equals_local(ray_cluster, tmp_path):
    _kg_build(tmp_path / "memory", "--executor", "memory")
    _kg_build(tmp_path / "ray", "--executor", "ray", "--workers", "2")
    _kg_build(tmp_path / "procs", "--workers", "2")
    expected = digest(tmp_path / "memory")
    assert digest(tmp_path / "ray") == expected
    assert digest(tmp_path / "procs") == expected


def test_ray_book_qa_build_through_the_test_server_equals_local(ray_cluster, tmp_path):
    from typer.testing import CliRunner

    from medmill.cli import app
    from tests.book_lit_fake_llm import respond
    from tests.llm_server import FakeLLMServer

    texts = Path(__file__).resolve().parents[2] / "examples" / "texts"
    outs = {}
    with FakeLLMServer(responder=respond) as server:
        for ex in ("memory", "ray"):
            outs[ex] = tmp_path / ex
            r = CliRunner().invoke(app, ["build-book-qa", str(texts), "--out", str(outs[ex]), "--llm-base-url", server.base_url,
                                         "--llm-model", "fake", "--val-size", "0.2", "--executor", ex, "--workers", "2"])
            assert r.exit_code == 0, r.output + repr(r.exception)
    assert digest(outs["ray"]) == digest(outs["memory"])
    assert json.loads((outs["ray"] / "manifest.json").read_text(encoding="utf-8"))["records_total"] > 0


def test_ray_streamed_pt_build_equals_in_memory(ray_cluster, tmp_path):
    """A build whose reader streams (build-pt) streams on Ray too: its batches go to the Ray workers a
    window at a time (5-document batches: many windows), and the dataset dir is the in-memory build's."""
    from medmill.builders.streaming.executors import RayExecutor
    from tests.streaming.test_build_stream import _build, _pt_inputs, dir_digest

    inputs = _pt_inputs(tmp_path / "in", docs=120)
    reference = dir_digest(_build(tmp_path, inputs, "memory", None))
    executor = RayExecutor(2, batch_items=5)
    out = _build(tmp_path, inputs, "ray", executor)
    assert not list(out.glob(".medmill-*")), "work files left behind"
    got = dir_digest(out)
    assert got == reference, {k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)}


def test_ray_streamed_build_from_the_cli_says_where_it_ran(ray_cluster, tmp_path):
    from typer.testing import CliRunner

    from medmill.cli import app
    from tests.streaming.test_build_stream import _pt_inputs

    inputs = [str(p) for p in _pt_inputs(tmp_path / "in", docs=60)]
    outs = {}
    for name, flags in (("memory", ["--executor", "memory"]), ("ray", ["--executor", "ray", "--workers", "2"])):
        outs[name] = tmp_path / name
        r = CliRunner().invoke(app, ["build-pt", *inputs, "--out", str(outs[name]), "--val-size", "0.1", *flags])
        assert r.exit_code == 0, r.output + repr(r.exception)
        if name == "ray":
            assert "streaming, 2 Ray workers" in r.output, r.output
    assert digest(outs["ray"]) == digest(outs["memory"])


def test_ray_ordered_map_keeps_order_across_windows_and_reports_a_workers_error(ray_cluster):
    from medmill.builders.streaming.ray_executor import ray_ordered_map
    from medmill.schemas.errors import MedmillError

    jobs = ((i, [i] * (i % 3)) for i in range(23))  # a generator: read lazily, window by window
    assert list(ray_ordered_map(_square_sum, jobs, workers=2, window=4)) == [(i, i * i * (i % 3)) for i in range(23)]
    with pytest.raises(MedmillError, match="job 5 is bad"):
        list(ray_ordered_map(_fail_at_5, range(10), workers=2, window=3))


def _square_sum(job):
    i, items = job
    return i, sum(x * x for x in items)


def _fail_at_5(i):
    from medmill.schemas.errors import MedmillError

    if i == 5:
        raise MedmillError("job 5 is bad")
    return i


def test_ray_streamed_llm_build_through_the_test_server_equals_in_memory(ray_cluster, tmp_path):
    """kg-qa in LLM mode streams on Ray: each Ray worker runs its engine with its share of the limits and
    writes the build's one request cache through the driver-side actor; the dir and the calls are the
    in-memory build's, and a rerun into the same cache pays for nothing."""
    from medmill.builders.core.run import run_build
    from medmill.builders.kg_qa.build import KGQABuilder, KGQAConfig
    from medmill.builders.streaming.executors import RayExecutor
    from tests.kg_qa.test_kg_qa_llm import scenario_model, write_kg
    from tests.llm_server import FakeLLMServer
    from tests.streaming.test_build_stream_more import _differs, _kg_qa

    kg = write_kg(tmp_path / "kg.jsonl")
    with FakeLLMServer(responder=scenario_model) as server:
        cfg = {"inputs": [kg], "mode": "llm", "seed": 3, "llm_qa": {"per_entity": 3}, "curation": {"dedup": False},
               "llm": {"base_url": server.base_url, "model": "fake-med", "concurrency": 4}}
        reference = digest(_kg_qa(tmp_path, "memory", None, **cfg))
        calls = len(server.bodies())
        assert calls > 0
        executor = RayExecutor(2, batch_items=5)
        report = run_build(KGQABuilder(), KGQAConfig(out=tmp_path / "ray", val_size=0.1, test_size=0.1, **cfg),
                           executor=executor, max_shard_bytes=4_000)  # as _kg_qa, keeping the summary
        assert ("executor", "streaming, 2 Ray workers") in report.figures
        got = digest(tmp_path / "ray")
        assert got == reference, _differs(reference, got)
        assert len(server.bodies()) == 2 * calls  # its own cache: every call once, none twice
        _kg_qa(tmp_path, "ray", executor, **cfg)  # again into the same out dir: answered from its cache
        assert len(server.bodies()) == 2 * calls
