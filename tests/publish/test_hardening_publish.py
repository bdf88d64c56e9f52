"""Issue 12 #18 and #25 (push): push refuses a dir that validate reports as failed, and keeps the
prose of a card a user wrote on the Hub while updating medmill's metadata and generated sections."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from medmill.builders.publish.card import GENERATED_END, GENERATED_START, merge_card, split_front_matter
from medmill.builders.publish.hub import plan_offline
from medmill.cli import _register, app
from medmill.schemas.errors import MedmillError
from tests.hub_server import FakeHub, Repo
from tests.publish.test_card import make_dir
from tests.publish.test_push import TOKEN, push

_register()

HAND_WRITTEN = """---
license: cc-by-4.0
language:
- zh
annotations_creators:
- machine-generated
tags:
- my-own-tag
---

# 我们的医学问答数据集

这段介绍是维护者亲手写的：数据来源、适用范围和联系方式。

## Contact

mail the maintainers.
"""


def _break_one_record(d) -> None:
    """Give one row of the train shard an invalid role (the manifest's counts stay right)."""
    shard = sorted((d / "data").glob("train-*.parquet"))[0]
    rows = pq.read_table(shard).to_pylist()
    rows[0]["messages"][0]["role"] = "robot"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    # keep manifest.json's shard sizes and hashes true, so only the record itself is wrong
    manifest_file = d / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    for split in manifest["splits"].values():
        for info in split.get("shards", []):
            if info["file"] == f"data/{shard.name}":
                info["bytes"] = shard.stat().st_size
                info["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")


def test_push_refuses_a_dir_that_fails_validation(tmp_path):
    d = make_dir(tmp_path, "sft")
    _break_one_record(d)
    with FakeHub(TOKEN) as hub:
        with pytest.raises(MedmillError, match=r"fails validation \(1 invalid record.*nothing pushed"):
            push(d, hub)
        assert hub.requests == []  # refused before any network call: no repo created
    with pytest.raises(MedmillError, match="fails validation"):
        plan_offline(d, "org/med")  # --dry-run says so too
    result = CliRunner().invoke(app, ["push", str(d), "--repo", "org/med", "--dry-run"])
    assert isinstance(result.exception, MedmillError) and "fails validation" in str(result.exception)


def test_push_refuses_a_dir_whose_shards_disagree_with_the_manifest(tmp_path):
    d = make_dir(tmp_path, "sft")
    manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    manifest["splits"]["train"]["records"] += 5
    (d / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with FakeHub(TOKEN) as hub, pytest.raises(MedmillError, match="manifest says train has"):
        push(d, hub)


def test_push_keeps_a_hand_written_card_and_updates_metadata(tmp_path):
    d = make_dir(tmp_path, "sft")
    with FakeHub(TOKEN) as hub:
        hub.repos["org/med"] = Repo(private=False, branches={"main": {"README.md": HAND_WRITTEN.encode()}})
        push(d, hub)
        card = hub.files("org/med")["README.md"].decode()
        header, body = split_front_matter(card)
        # the user's prose and own YAML keys are kept
        assert "这段介绍是维护者亲手写的" in body and "## Contact" in body
        assert header["annotations_creators"] == ["machine-generated"]
        # medmill's metadata and generated sections are there, once
        assert header["configs"][0]["config_name"] == "default" and header["dataset_info"]
        assert "my-own-tag" in header["tags"] and "medmill" in header["tags"]
        assert body.count(GENERATED_START) == 1 and body.count(GENERATED_END) == 1
        assert "## Dataset structure" in body
        # a second push replaces the generated block in place and commits nothing new
        result = push(d, hub)
        assert result.plan.is_noop
        again = hub.files("org/med")["README.md"].decode()
        assert again == card


def test_merge_card_replaces_only_the_generated_block():
    generated = f"---\nlicense: mit\nconfigs: []\n---\n{GENERATED_START}\n# new stats\n{GENERATED_END}\n"
    existing = (
        f"---\nlicense: other\nextra: kept\n---\n# Mine\n\nintro\n\n{GENERATED_START}\n# old stats\n{GENERATED_END}\n\nfooter\n"
    )
    merged = merge_card(existing, generated)
    header, body = split_front_matter(merged)
    assert header == {"license": "mit", "configs": [], "extra": "kept"}
    assert body == f"# Mine\n\nintro\n\n{GENERATED_START}\n# new stats\n{GENERATED_END}\n\nfooter\n"
    # a card without a header or markers: the block goes below the text
    plain = merge_card("Just text.\n", generated)
    assert yaml.safe_load(plain.split("---")[1]) == {"license": "mit", "configs": []}
    assert plain.endswith(f"Just text.\n\n{GENERATED_START}\n# new stats\n{GENERATED_END}\n")
