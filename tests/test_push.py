"""medmill push against a local stand-in for the Hub (tests/hub_server.py) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.publish.card import render_card
from medmill.builders.publish.hub import plan_offline, push_dir
from medmill.cli import _register, app
from medmill.schemas.errors import MedmillError
from medmill.version import __version__
from tests.hub_server import FakeHub
from tests.test_card import make_dir

TOKEN = "hf_TESTtoken0123456789secret"


def push(d: Path, hub: FakeHub, repo: str = "org/med", **kw):
    return push_dir(d, repo, token=TOKEN, endpoint=hub.url, retry_delay=0.01, **kw)


def local_files(d: Path) -> dict[str, bytes]:
    names = [p for p in d.rglob("*") if p.is_file() and p.name not in ("README.md", "rejects.jsonl")]
    return {str(p.relative_to(d)): p.read_bytes() for p in names}


def test_first_push_creates_repo_and_commits_everything_once(tmp_path):
    d = make_dir(tmp_path, "sft")
    with FakeHub(TOKEN) as hub:
        result = push(d, hub, private=True)
        kinds = hub.kinds()
        assert kinds[0] == "create" and kinds.count("commit") == 1 and len(result.commits) == 1
        assert hub.repos["org/med"].private is True
        files = hub.files("org/med")
        # shards, plots and manifest byte for byte; a card rendered for the repo
        assert {p: files[p] for p in local_files(d)} == local_files(d)
        assert set(files) == set(local_files(d)) | {"README.md"}
        assert {p for p in files if p.startswith("data/")} == {
            f"data/{Path(f).name}" for f in os.listdir(d / "data")
        }
        commit = hub.repos["org/med"].commits[0]
        assert f"medmill {__version__}" in commit.summary and "config 'default'" in commit.summary
        assert "medmill build-sft" in commit.description  # the command that built it
        card = DatasetCard(files["README.md"].decode())
        assert card.data.to_dict()["configs"][0]["config_name"] == "default"


def test_token_travels_only_in_the_authorization_header(tmp_path):
    d = make_dir(tmp_path, "sft")
    with FakeHub(TOKEN) as hub:
        push(d, hub)
        push(d, hub)
    assert hub.requests
    for req in hub.requests:
        assert TOKEN not in req.path and TOKEN not in str(req.query) and TOKEN.encode() not in req.body
        for name, value in req.headers.items():
            assert TOKEN not in value or (name == "authorization" and value == f"Bearer {TOKEN}")
    writes = [r for r in hub.requests if r.method == "POST" and "validate-yaml" not in r.path]
    assert writes and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in writes)


def test_second_push_of_unchanged_data_makes_no_commit(tmp_path):
    d = make_dir(tmp_path, "preference")
    with FakeHub(TOKEN) as hub:
        push(d, hub)
        before = len(hub.requests)
        result = push(d, hub)
        again = hub.kinds()[before:]
    assert result.plan.is_noop and result.commits == []
    assert "commit" not in again and "preupload" not in again
    assert len(result.plan.unchanged) == len(local_files(d)) + 1  # + README.md


def test_rebuild_replaces_stale_shards_of_the_config(tmp_path):
    d = make_dir(tmp_path, "sft", n=12, max_shard_bytes=1)  # many small shards
    with FakeHub(TOKEN) as hub:
        push(d, hub)
        old = {p for p in hub.files("org/med") if p.startswith("data/")}
        assert len(old) > 2
        d = make_dir(tmp_path, "sft", n=12)  # same data, one shard per split now
        result = push(d, hub)
        new = {p for p in hub.files("org/med") if p.startswith("data/")}
    assert new == {f"data/{n}" for n in os.listdir(d / "data")}
    assert set(result.plan.deletions) == old - new
    assert hub.repos["org/med"].commits[-1].deleted == sorted(old - new)


def test_several_configs_share_one_repo_and_card(tmp_path):
    sft = make_dir(tmp_path, "sft")
    pref = make_dir(tmp_path, "preference")
    with FakeHub(TOKEN) as hub:
        push(sft, hub)
        push(pref, hub, config_name="prefs")
        push(sft, hub, config_name="kg_v2")
        files = hub.files("org/med")
    header = DatasetCard(files["README.md"].decode()).data.to_dict()
    configs = header["configs"]
    assert [c["config_name"] for c in configs] == ["default", "kg_v2", "prefs"]
    # per-config sizes (what the Hub viewer shows) survive pushes of the other configs
    assert [i["config_name"] for i in header["dataset_info"]] == ["default", "kg_v2", "prefs"]
    pref_splits = {s["name"]: s["num_examples"] for s in header["dataset_info"][2]["splits"]}
    manifest = json.loads((pref / "manifest.json").read_text(encoding="utf-8"))
    assert pref_splits == {s: i["records"] for s, i in manifest["splits"].items()}
    by_name = {c["config_name"]: c for c in configs}
    assert {f["path"] for f in by_name["prefs"]["data_files"]} == {"prefs/train-*", "prefs/validation-*"}
    assert "prefs/manifest.json" in files and "manifest.json" in files and "kg_v2/manifest.json" in files
    assert any(p.startswith("prefs/plots/") for p in files)
    readme = files["README.md"].decode()
    assert "](kg_v2/plots/length_hist.png)" in readme  # the last push's card links its own plots
    for c in configs:  # every data_files pattern matches shards that exist
        for f in c["data_files"]:
            prefix = f["path"][:-1]
            assert any(p.startswith(prefix) and p.endswith(".parquet") for p in files)


def test_many_files_are_split_into_several_commits_card_last(tmp_path):
    d = make_dir(tmp_path, "pretrain", n=12, max_shard_bytes=1)
    with FakeHub(TOKEN) as hub:
        result = push(d, hub, max_files_per_commit=3)
        commits = hub.repos["org/med"].commits
    assert len(commits) == len(result.commits) > 2
    assert all(len(c.added) <= 3 for c in commits[:-1])
    assert "README.md" in commits[-1].added and "manifest.json" in commits[-1].added
    assert all("README.md" not in c.added for c in commits[:-1])
    assert commits[0].summary.endswith(f"(part 1/{len(commits)})")


def test_transient_errors_are_retried(tmp_path):
    d = make_dir(tmp_path, "sft")
    with FakeHub(TOKEN) as hub:
        hub.fail = {"create": [503], "commit": [502, 429]}
        result = push(d, hub)
        kinds = hub.kinds()
    assert len(result.commits) == 1
    assert kinds.count("create") == 2 and kinds.count("commit") == 3


def test_rejected_or_missing_token_is_a_one_line_error(tmp_path, monkeypatch):
    d = make_dir(tmp_path, "sft")
    with FakeHub("hf_the_right_one") as hub:
        with pytest.raises(MedmillError) as err:
            push(d, hub)
    message = str(err.value)
    assert "rejected the token" in message and "\n" not in message and TOKEN not in message
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_login" / "token"))
    with pytest.raises(MedmillError, match="no Hugging Face token"):
        push_dir(d, "org/med", endpoint="http://127.0.0.1:9")


def test_token_from_the_login_cache(tmp_path, monkeypatch):
    """`hf auth login` stores the token in HF_HOME/token; push uses it when HF_TOKEN is unset."""
    from huggingface_hub import constants

    cached = tmp_path / "hf_home" / "token"
    cached.parent.mkdir()
    cached.write_text(TOKEN)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cached))
    d = make_dir(tmp_path, "pretrain")
    with FakeHub(TOKEN) as hub:
        result = push_dir(d, "org/med", endpoint=hub.url, retry_delay=0.01)
    assert len(result.commits) == 1 and "manifest.json" in hub.files("org/med")


def test_unfinished_dir_is_refused(tmp_path):
    d = make_dir(tmp_path, "sft")
    (d / "manifest.json").unlink()
    with pytest.raises(MedmillError, match="no manifest.json"):
        plan_offline(d, "org/med")
    with pytest.raises(MedmillError, match="config-name"):
        plan_offline(make_dir(tmp_path, "sft", name="ok"), "org/med", config_name="data")


def test_dir_with_no_records_is_refused_before_it_wipes_the_config(tmp_path):
    # `medmill dedup --index` can keep nothing; pushing that would delete the config's shards on the Hub
    d = tmp_path / "empty"
    write_dataset_dir(d, [], [], BuildInfo(kind="sft", builder="t", command="medmill dedup"), render_card=render_card)
    with pytest.raises(MedmillError, match="holds no records"):
        plan_offline(d, "org/med")
    with FakeHub(TOKEN) as hub:
        push(make_dir(tmp_path, "sft"), hub)
        before = hub.files("org/med")
        with pytest.raises(MedmillError, match="holds no records"):
            push(d, hub)
        assert hub.files("org/med") == before


def test_dry_run_prints_operations_without_network(tmp_path, monkeypatch):
    d = make_dir(tmp_path, "sft")
    _register()
    with FakeHub(TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        result = CliRunner().invoke(app, ["push", str(d), "--repo", "org/med", "--config-name", "kg", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert hub.requests == []
    for name in os.listdir(d / "data"):
        assert f"add kg/{name}" in result.output
    assert "add kg/manifest.json" in result.output and "add README.md" in result.output
    assert "add kg/plots/length_hist.png" in result.output
    assert TOKEN not in result.output


def test_cli_push_honours_hf_endpoint_and_hf_token(tmp_path):
    """The real console script in a fresh process: HF_ENDPOINT and HF_TOKEN come from the environment."""
    d = make_dir(tmp_path, "pretrain")
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home")}
    cmd = [sys.executable, "-m", "medmill.cli", "push", str(d), "--repo", "org/pt", "--revision", "v1"]
    with FakeHub(TOKEN) as hub:
        env["HF_ENDPOINT"] = hub.url
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "manifest.json" in hub.files("org/pt", "v1") and hub.files("org/pt", "main") == {}
    assert "nothing changed since the last push" in second.stdout
    for out in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert TOKEN not in out


@pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")
def test_large_files_go_through_git_lfs(tmp_path, monkeypatch):
    """parquet/png as LFS objects (batch API + PUT to storage), as the Hub does when Xet is off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    d = make_dir(tmp_path, "sft")
    with FakeHub(TOKEN, lfs=True) as hub:
        push(d, hub)
        first = hub.kinds()
        result = push(d, hub)
        puts = [r for r in hub.requests if r.method == "PUT"]
    lfs_paths = {p for p in local_files(d) if p.endswith((".parquet", ".png"))}
    assert first.count("lfs-upload") == len(lfs_paths) and "lfs-batch" in first
    assert {p: hub.files("org/med")[p] for p in lfs_paths} == {p: local_files(d)[p] for p in lfs_paths}
    assert all("authorization" not in r.headers for r in puts)  # storage uploads never see the token
    assert result.plan.is_noop  # unchanged LFS files are recognised by their sha256
