"""The dataset-dir writer: layout, determinism, atomicity, shards, group-aware splits, duplicates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.publish.card import render_card
from medmill.schemas import Message, PreferenceRecord, PretrainRecord, RejectRow, SFTRecord, Source
from medmill.schemas.dataset_dir import iter_rows


def sft_records(n: int, groups: int = 10) -> list[SFTRecord]:
    out = []
    for i in range(n):
        m = [Message(role="user", content=f"第{i}个问题：头痛怎么办？"), Message(role="assistant", content=f"第{i}个回答：注意休息。")]
        out.append(
            SFTRecord(
                id=SFTRecord.make_id(m),
                messages=m,
                source=Source(file="kg.json", line=i + 1, ref=f"e{i % groups}", group=f"entity:e{i % groups}", builder="t"),
                meta={"i": i},
            )
        )
    return out


def info(**kw) -> BuildInfo:
    base = dict(kind="sft", builder="test", command="medmill test", seed=7, val_size=0.2)
    base.update(kw)
    return BuildInfo(**base)


def test_layout_and_load_dataset(tmp_path: Path):
    import datasets

    out = tmp_path / "ds"
    rej = [RejectRow(stage="read", reason="invalid_json", message="line 3", source=Source(file="kg.json", line=3))]
    m = write_dataset_dir(out, sft_records(40), rej, info(), render_card=render_card)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data", "manifest.json", "plots", "rejects.jsonl"]
    assert (out / "data" / "train-00000-of-00001.parquet").exists()
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "validation"}
    assert ds["train"].num_rows + ds["validation"].num_rows == 40 == m.records_total
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rejects_by_reason"] == {"read/invalid_json": 1}
    assert manifest["splits"]["train"]["records"] == ds["train"].num_rows
    assert [json.loads(line)["reason"] for line in (out / "rejects.jsonl").read_text().splitlines()] == ["invalid_json"]


def test_splits_are_group_aware(tmp_path: Path):
    out = tmp_path / "ds"
    write_dataset_dir(out, sft_records(100, groups=20), [], info(val_size=0.2, test_size=0.1), render_card=render_card)
    where: dict[str, set[str]] = {}
    for split, _f, _i, row in iter_rows(out):
        where.setdefault(row["source"]["group"], set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    splits = {s for v in where.values() for s in v}
    assert splits == {"train", "validation", "test"}


def test_same_seed_same_bytes_other_seed_other_split(tmp_path: Path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    recs = sft_records(60)
    write_dataset_dir(a, recs, [], info(seed=1), render_card=render_card)
    write_dataset_dir(b, list(reversed(recs)), [], info(seed=1), render_card=render_card)
    write_dataset_dir(c, recs, [], info(seed=2), render_card=render_card)
    files = sorted(p.relative_to(a) for p in (a / "data").iterdir())
    assert files == sorted(p.relative_to(b) for p in (b / "data").iterdir())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    groups = lambda d: sorted(r["source"]["group"] for s, _f, _i, r in iter_rows(d) if s == "validation")  # noqa: E731
    assert groups(a) != groups(c)


def test_bounded_shards(tmp_path: Path):
    out = tmp_path / "ds"
    write_dataset_dir(out, sft_records(200), [], info(val_size=0.0, max_shard_bytes=4000), render_card=render_card)
    shards = sorted((out / "data").glob("train-*.parquet"))
    assert len(shards) > 3
    n = len(shards)
    assert [s.name for s in shards] == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    assert sum(1 for _ in iter_rows(out)) == 200


def test_exact_duplicates_become_rejects(tmp_path: Path):
    recs = sft_records(5)
    m = write_dataset_dir(tmp_path / "ds", recs + recs[:2], [], info(val_size=0.0), render_card=render_card)
    assert m.records_total == 5
    assert m.rejects_by_reason == {"write/exact_duplicate": 2}


def test_rewrite_replaces_data_and_keeps_foreign_files(tmp_path: Path):
    out = tmp_path / "ds"
    write_dataset_dir(out, sft_records(200), [], info(val_size=0.0, max_shard_bytes=4000), render_card=render_card)
    (out / "llm_cache.sqlite").write_bytes(b"cache")
    write_dataset_dir(out, sft_records(10), [], info(val_size=0.0), render_card=render_card)
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    assert (out / "llm_cache.sqlite").read_bytes() == b"cache"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]


def test_failed_write_leaves_no_complete_looking_dir(tmp_path: Path):
    def boom(*a, **k):
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_dataset_dir(tmp_path / "ds", sft_records(5), [], info(), render_card=boom)
    assert not (tmp_path / "ds" / "manifest.json").exists()
    assert os.listdir(tmp_path) == [] or not any((tmp_path / d / "manifest.json").exists() for d in os.listdir(tmp_path))


def test_without_a_card_renderer_the_writer_writes_a_plain_card(tmp_path: Path):
    """The writer needs nothing from publish/: with no renderer it still writes a README."""
    write_dataset_dir(tmp_path / "ds", sft_records(3), [], info(val_size=0.0))
    text = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert "Records (sft): train: 3." in text and "---" not in text


def test_card_yaml_header(tmp_path: Path):
    out = tmp_path / "ds"
    write_dataset_dir(out, sft_records(30), [], info(license="cc-by-4.0"), render_card=render_card)
    text = (out / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "cc-by-4.0"
    assert header["language"] == ["zh"]
    assert header["size_categories"] == ["n<1K"]
    assert {"split": "train", "path": "data/train-*"} in header["configs"][0]["data_files"]
    assert "Not medical advice" in text


def test_preference_and_pretrain_kinds(tmp_path: Path):
    import datasets

    p = [Message(role="user", content="感冒要用抗生素吗？")]
    c = [Message(role="assistant", content="普通感冒多为病毒感染，一般不需要抗生素。")]
    r = [Message(role="assistant", content="一定要用抗生素。")]
    pref = PreferenceRecord(id=PreferenceRecord.make_id(p, c, r), prompt=p, chosen=c, rejected=r, source=Source(builder="t"))
    write_dataset_dir(tmp_path / "pref", [pref], [], BuildInfo(kind="preference", builder="t", command="x"), render_card=render_card)
    row = datasets.load_dataset(str(tmp_path / "pref"))["train"][0]
    assert row["chosen"] == [{"role": "assistant", "content": c[0].content}]
    t = PretrainRecord(id=PretrainRecord.make_id("传染病是…"), text="传染病是…", source=Source(builder="t"))
    write_dataset_dir(tmp_path / "pt", [t], [], BuildInfo(kind="pretrain", builder="t", command="x"), render_card=render_card)
    assert datasets.load_dataset(str(tmp_path / "pt"))["train"][0]["text"] == "传染病是…"
