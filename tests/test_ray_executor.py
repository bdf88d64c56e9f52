"""`--executor ray` gives the dataset dir the local executor gives (same survivors, representatives,
splits, rejects: sha256 of every file) for a filter run and a dedup run, on a local 2-CPU Ray cluster."""

from __future__ import annotations

import pytest

from medmill.builders.curation.settings import CurationSettings
from medmill.commands._over_dirs import run_over_dirs
from medmill.commands._run_options import RunOptions
from tests.test_streaming import FILTER, dedup_steps, digest, make_input

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ray_cluster():
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
        run_over_dirs("dedup", dirs, outs[ex], settings, {}, make_steps=dedup_steps, run=RunOptions(ex, 2, batch_rows=128))
    assert digest(outs["ray"]) == digest(outs["local"])
    assert "near_duplicate" in (outs["ray"] / "rejects.jsonl").read_text(encoding="utf-8")
