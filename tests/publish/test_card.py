"""Dataset cards: per-kind templates, Hub-valid YAML (DatasetCardData round-trip), statistics, plots.

Also holds the small dataset-dir makers the push / export / report tests share.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.publish.card import SIZE_CATEGORIES, card_metadata, render_card, summary_of
from medmill.schemas import Message, PreferenceRecord, PretrainRecord, RejectRow, SFTRecord, Source

# The tests that check the plot files draw them (fresh_plots); the others read cards whose plot files are
# stand-ins with the same names (tests/conftest.py).

RELATIONS = ["症状", "治疗药物", "所属科室"]


def sft_records(n: int, tag: str = "") -> list[SFTRecord]:
    out = []
    for i in range(n):
        msgs = [Message(role="user", content=f"{tag}疾病{i}的{RELATIONS[i % 3]}是什么？")]
        msgs.append(Message(role="assistant", content=f"疾病{i}的{RELATIONS[i % 3]}：头痛、发热。" * (1 + i % 4)))
        if i % 5 == 4:  # some multi-turn conversations with a system prompt
            msgs = [Message(role="system", content="你是医生。"), *msgs]
            msgs += [Message(role="user", content="还需要注意什么？"), Message(role="assistant", content="多休息，及时就医。")]
        src = Source(file="kg.json", line=i + 1, group=f"entity{i // 2}", builder="kg-qa")
        meta = {"relation": RELATIONS[i % 3], "entity": f"疾病{i}"}
        out.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=src, meta=meta))
    return out


def pref_records(n: int) -> list[PreferenceRecord]:
    out = []
    for i in range(n):
        prompt = [Message(role="user", content=f"感冒{i}天了怎么办？")]
        if i % 4 == 3:
            prompt = [
                Message(role="system", content="你是医生。"),
                Message(role="user", content="我发烧了"),
                Message(role="assistant", content="体温多少？"),
                Message(role="user", content=f"{38 + i % 3}度，{i}天了"),
            ]
        chosen = [Message(role="assistant", content=f"多喝水，休息；{i}天不退烧请就医。")]
        rejected = [Message(role="assistant", content="不用就医，自行加倍剂量。")]
        out.append(
            PreferenceRecord(
                id=PreferenceRecord.make_id(prompt, chosen, rejected),
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                source=Source(file="prefs.jsonl", line=i + 1, group=f"p{i}", builder="prefs"),
                meta={"strategy": "corrupt", "perturbation": ["safety", "truncate"][i % 2]},
            )
        )
    return out


def pretrain_records(n: int) -> list[PretrainRecord]:
    out = []
    for i in range(n):
        text = f"第{i}章 传染病总论。传染病是指由病原微生物感染人体后产生的有传染性的疾病。" * (1 + i % 3)
        src = Source(file="book.txt", offset=i * 100, group=f"chap{i // 3}", builder="book")
        out.append(PretrainRecord(id=PretrainRecord.make_id(text), text=text, source=src, meta={"chapter": f"第{i % 2}章"}))
    return out


def make_dir(tmp: Path, kind: str, n: int = 12, name: str | None = None, **info_kw) -> Path:
    """A finished dataset dir of `kind` with rejects, curation stats and an input file."""
    records = {"sft": sft_records, "preference": pref_records, "pretrain": pretrain_records}[kind](n)
    src = tmp / f"input-{kind}.json"
    src.write_text("原始输入\n", encoding="utf-8")
    out = tmp / (name or kind)
    info = BuildInfo(
        kind=kind,
        builder={"sft": "kg-qa", "preference": "prefs", "pretrain": "book"}[kind],
        command=f"medmill build-{kind} {src} --out {out}",
        inputs=[src],
        val_size=0.25,
        license="cc-by-4.0",
        source_licenses={str(src): "MIT (QASystemOnMedicalKG)"},
        counters=Counter({"entities_read": n, "pii_phone_masked": 2}),
        curation={"dedup": {"clusters": 3, "removed": 4}, "safety": {"flagged": 1, "dropped": 1}},
        prompts=[{"id": "kg_qa", "version": "3"}],
        llm={"model": "qwen-plus"},
        description=f"Test {kind} data for medmill.",
        **info_kw,
    )
    rejects = [
        RejectRow(stage="read", reason="bad_json", message="Expecting value", source=Source(file=str(src), line=3), raw="{oops"),
        RejectRow(stage="safety", reason="dangerous_dosing", message="自行加倍剂量", raw={"text": "自行加倍剂量"}),
    ]
    write_dataset_dir(out, records, rejects, info, render_card=render_card)
    return out


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("kind", ["sft", "preference", "pretrain"])
def test_card_metadata_round_trips_through_huggingface_hub(tmp_path, kind):
    d = make_dir(tmp_path, kind)
    text = (d / "README.md").read_text(encoding="utf-8")
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert data == _front_matter(text)
    assert DatasetCardData(**data).to_dict() == data
    assert data["license"] == "cc-by-4.0"
    assert data["language"] == ["zh"]
    assert data["size_categories"][0] in {name for _, name in SIZE_CATEGORIES}
    assert data["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": "data/train-*"}, {"split": "validation", "path": "data/validation-*"}],
            "description": data["configs"][0]["description"],  # the content fingerprint (issue 12 #24)
        }
    ]
    assert data["configs"][0]["description"].startswith("medmill content sha256:")
    assert "Not medical advice" in text and "非医疗建议" in text
    assert "```bibtex" in text
    assert summary_of(text) == f"Test {kind} data for medmill."


@pytest.mark.fresh_plots
def test_sft_card_sections_statistics_and_plots(tmp_path):
    d = make_dir(tmp_path, "sft", n=12)
    text = (d / "README.md").read_text(encoding="utf-8")
    manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    src = manifest["inputs"][0]
    # how it was built: command, full sha256 and the source's license, prompts and models
    assert manifest["command"] in text
    assert src["sha256"] in text and "MIT (QASystemOnMedicalKG)" in text
    assert "`kg_qa` v3" in text and "model=`qwen-plus`" in text
    # statistics: per split, lengths in characters and the token proxy, categories, rejects, curation
    for split, info in manifest["splits"].items():
        assert f"| {split} | {info['records']} | 1 |" in text
    assert sum(i["records"] for i in manifest["splits"].values()) == 12
    assert "| prompt | characters |" in text and "| answer | ≈ tokens |" in text
    assert "**meta.relation** (3 values)" in text and "| 症状 | 4 |" in text
    assert "| read/bad_json | 1 |" in text and "| safety/dangerous_dosing | 1 |" in text
    assert "| dedup | removed | 4 |" in text and "| safety | flagged | 1 |" in text
    assert "| pii_phone_masked | 2 |" in text
    assert "User turns per conversation" in text
    # plots are PNG files in the dir and linked from the card
    for link in ("plots/length_hist.png", "plots/meta_relation.png"):
        assert f"]({link})" in text
        assert (d / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.fresh_plots
def test_kind_specific_sections(tmp_path):
    d = make_dir(tmp_path, "preference")
    pref = (d / "README.md").read_text(encoding="utf-8")
    assert "DPOTrainer" in pref and "| chosen | characters |" in pref and "| rejected | ≈ tokens |" in pref
    assert "**meta.perturbation** (2 values)" in pref and "**meta.strategy**" not in pref  # a constant
    assert (d / "plots/meta_perturbation.png").exists() and not (d / "plots/meta_strategy.png").exists()
    pt = (make_dir(tmp_path, "pretrain") / "README.md").read_text(encoding="utf-8")
    assert "| text | characters |" in pt and "continued pre-training" in pt
    assert "**meta.chapter**" in pt


def test_lengths_are_exact(tmp_path):
    d = make_dir(tmp_path, "pretrain", n=3)
    text = (d / "README.md").read_text(encoding="utf-8")
    lengths = sorted(len(r.text) for r in pretrain_records(3))
    # 3 records: min and max are exact character counts
    row = next(line for line in text.splitlines() if line.startswith("| text | characters |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[2]) == lengths[0] and int(cells[6].replace(",", "")) == lengths[-1]


def test_push_rendering_prefixes_assets_and_keeps_other_configs(tmp_path):
    d = make_dir(tmp_path, "sft")
    m = Manifest.model_validate_json((d / "manifest.json").read_text(encoding="utf-8"))
    other = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    text = render_card(m, d, "x", config_name="kg", data_dir="kg", asset_prefix="kg/", other_configs=other, plots=False)
    meta = _front_matter(text)
    assert [c["config_name"] for c in meta["configs"]] == ["default", "kg"]
    assert meta["configs"][1]["data_files"][0] == {"split": "train", "path": "kg/train-*"}
    assert "](kg/plots/length_hist.png)" in text
    assert "Other configs in this repository: `default`" in text
    assert DatasetCardData(**meta).to_dict() == meta


def test_empty_build_renders_a_card(tmp_path):
    out = tmp_path / "empty"
    write_dataset_dir(out, [], [], BuildInfo(kind="sft", builder="kg-qa", command="medmill build-kg-qa x"), render_card=render_card)
    text = (out / "README.md").read_text(encoding="utf-8")
    assert DatasetCard(text).data.to_dict()["configs"][0]["data_files"] == []
    assert not (out / "plots").exists()


def test_card_metadata_marks_unlisted_license(tmp_path):
    m = Manifest(version="0", kind="sft", builder="b", command="c")
    meta = card_metadata(m)
    assert meta["license"] == "other" and meta["license_name"] and meta["license_link"]
    assert DatasetCardData(**meta).to_dict() == meta


def test_dataset_dir_with_plots_still_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = make_dir(tmp_path, "sft")
    ds = datasets.load_dataset(str(d))
    splits = json.loads((d / "manifest.json").read_text(encoding="utf-8"))["splits"]
    assert {s: ds[s].num_rows for s in ds} == {s: i["records"] for s, i in splits.items()}
    assert ds["train"].column_names == ["id", "messages", "source", "meta"]


def test_token_proxy_matches_its_regex_definition():
    import random

    import pyarrow as pa
    import pyarrow.compute as pc

    from medmill.builders.publish.stats import TOKEN_PROXY_RE, token_proxy

    rng = random.Random(7)
    alphabet = "ab Z09\t\n。，头痛é€😀-_.!  "
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)] + [None, ""]
    arr = pa.array(texts)
    for part in (arr, arr.slice(11, 500)):
        expected = pc.count_substring_regex(pc.fill_null(part, ""), TOKEN_PROXY_RE).to_numpy(zero_copy_only=False)
        assert token_proxy(part).tolist() == expected.tolist()
    assert token_proxy(pa.array(["头痛 fever 38.5度！"])).tolist() == [2 + 1 + 1 + 1 + 1 + 1 + 1]


def test_list_and_nested_meta_values_are_counted(tmp_path):
    from medmill.builders.publish.stats import compute_stats

    recs = []
    for i in range(6):
        msgs = [Message(role="user", content=f"问题{i}"), Message(role="assistant", content=f"回答{i}")]
        meta = {"relations": ["症状", "检查"] if i % 2 else ["症状"], "input_meta": {"qtype": ["a", "b"][i % 2]}, "mode": "t"}
        recs.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(builder="t"), meta=meta))
    out = tmp_path / "d"
    write_dataset_dir(out, recs, [], BuildInfo(kind="sft", builder="t", command="t"), render_card=render_card)
    cats = compute_stats(out, "sft").categories
    assert cats["relations"] == Counter({"症状": 6, "检查": 3})
    assert cats["input_meta.qtype"] == Counter({"a": 3, "b": 3})
    assert "mode" not in cats  # constant


def test_source_license_matches_paths_as_users_type_them(tmp_path, monkeypatch):
    from medmill.builders.publish.card import license_of

    monkeypatch.chdir(tmp_path)
    (tmp_path / "kg").mkdir()
    assert license_of("kg/a.json", {"./kg/a.json": "MIT"}) == "MIT"
    assert license_of("kg/a.json", {str(tmp_path / "kg"): "CC-BY-4.0"}) == "CC-BY-4.0"  # a folder of inputs
    assert license_of("/elsewhere/a.json", {"a.json": "Apache-2.0"}) == "Apache-2.0"
    assert license_of("kg/b.json", {"kg/a.json": "MIT"}).startswith("not stated")


def test_rebuilt_dir_of_the_same_name_does_not_load_stale_rows(tmp_path):
    """With a `configs` list datasets keys its cache on the card's YAML; dataset_info sizes change it."""
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf_cache"
    out = tmp_path / "kg_qa"
    info = BuildInfo(kind="sft", builder="kg-qa", command="c", val_size=0.0)
    write_dataset_dir(out, sft_records(10), [], info, render_card=render_card)
    assert datasets.load_dataset(str(out), cache_dir=str(cache))["train"].num_rows == 10
    write_dataset_dir(out, sft_records(11, tag="新"), [], info, render_card=render_card)
    ds = datasets.load_dataset(str(out), cache_dir=str(cache))["train"]
    assert ds.num_rows == 11 and ds[0]["messages"][0]["content"].startswith("新")
    header = _front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert header["dataset_info"]["splits"] == [{"name": "train", "num_bytes": header["dataset_info"]["dataset_size"], "num_examples": 11}]


def test_meta_counted_once_per_distinct_text_equals_row_by_row(tmp_path, monkeypatch):
    """Category counters, key order and value order included, equal a plain pass over every row's
    meta; lengths are kept as int32 and give the int64 figures; small stats batches change nothing."""
    import random

    import numpy as np

    from medmill.builders.publish import stats as st

    rng = random.Random(2)
    recs = []
    for i in range(400):
        text = f"第{i}段：" + "传染病" * rng.randint(1, 30)
        meta = rng.choice([{}, {"chapter": rng.choice(["一", "二", "三"])}, {"section": rng.choice("abcd"), "chapter": "二"},
                           {"relations": rng.sample(["症状", "检查", "治疗"], rng.randint(1, 3))}])
        recs.append(PretrainRecord(id=PretrainRecord.make_id(text), text=text, source=Source(builder="t"), meta=meta))
    out = tmp_path / "d"
    write_dataset_dir(out, recs, [], BuildInfo(kind="pretrain", builder="t", command="t"), render_card=render_card)
    monkeypatch.setattr(st, "STATS_BATCH_ROWS", 37)
    got = st.compute_stats(out, "pretrain")
    want: dict[str, Counter] = {}
    for shard in sorted((out / "data").glob("*.parquet")):
        import pyarrow.parquet as pq

        for meta in pq.read_table(shard, columns=["meta"]).column(0).to_pylist():
            for k, values in st._meta_values(meta).items():
                want.setdefault(k, Counter()).update(values)
    want = st._pick_categories(want, got.meta_rows_read)
    assert got.categories == want and list(got.categories) == list(want)
    assert all(list(got.categories[k]) == list(want[k]) for k in want) and "chapter" in want
    chars = got.chars["text"]
    assert chars.values.dtype == np.int32
    wide = st.Distribution(chars.values.astype(np.int64), chars.counts)
    assert chars.summary() == wide.summary() and chars.histogram() == wide.histogram()
