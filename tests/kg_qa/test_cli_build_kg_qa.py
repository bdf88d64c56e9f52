"""`medmill build-kg-qa` end to end: the bundled example KG, the real samples, errors, rejects, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import medmill.cli
from medmill.schemas.dataset_dir import split_files
from tests.hardening_cli import run_medmill

medmill.cli._register()


def _run(*args) -> object:
    result = CliRunner().invoke(medmill.cli.app, [str(a) for a in args])
    return result


def _build(*args):
    result = _run("build-kg-qa", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _rows(out: Path) -> dict[str, list[dict]]:
    return {split: [r for f in files for r in pq.read_table(f).to_pylist()]
            for split, files in split_files(out).items()}


EXAMPLE_KG = Path(__file__).resolve().parents[2] / "examples" / "kg"


@pytest.fixture(scope="module")
def example_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kgqa") / "kg_qa"
    _build(EXAMPLE_KG, "--out", out, "--val-size", "0.1", "--test-size", "0.1")
    return out


def test_example_build_loads_and_validates(example_build, tmp_path):
    import datasets

    manifest = json.loads((example_build / "manifest.json").read_text(encoding="utf-8"))
    # own cache dir: with `configs` in the card, datasets keys its cache on the dir name and the
    # data_files patterns only, so another "kg_qa" dir loaded earlier would be served from cache
    ds = datasets.load_dataset(str(example_build), cache_dir=str(tmp_path / "hf_cache"))
    assert set(ds) == {"train", "validation", "test"}
    for split, info in manifest["splits"].items():
        assert ds[split].num_rows == info["records"]
    row = ds["train"][0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert json.loads(row["meta"])["mode"] == "template"
    result = _run("validate", example_build)
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_example_manifest(example_build, examples_dir):
    m = json.loads((example_build / "manifest.json").read_text(encoding="utf-8"))
    assert m["builder"] == "kg-qa" and m["kind"] == "sft"
    assert m["counters"]["entities_read"] == 56  # 47 diseases + 9 drugs
    assert m["counters"]["files.entities"] == 1 and m["counters"]["files.csv_triples"] == 1
    assert m["records_total"] > 400
    assert m["params"]["template_qa"]["seed"] == 42 and m["params"]["seed"] == 42 and m["params"]["mode"] == "template"
    assert m["prompts"] == [{"id": "kg_qa_templates", "version": "1"}]
    assert {Path(i["path"]).name for i in m["inputs"]} == {"diseases.jsonl", "drugs.tsv"}
    assert all(len(i["sha256"]) == 64 for i in m["inputs"])
    assert m["timings"]["total"] > 0


def test_splits_are_group_aware(example_build):
    where: dict[str, set[str]] = {}
    for split, rows in _rows(example_build).items():
        for r in rows:
            where.setdefault(r["source"]["group"], set()).add(split)
    assert len(where) > 50
    assert all(len(splits) == 1 for splits in where.values())
    assert {s for splits in where.values() for s in splits} == {"train", "validation", "test"}


def test_example_answers_state_their_meta_values(example_build):
    rows = [r for rows in _rows(example_build).values() for r in rows]
    qtypes = set()
    for r in rows:
        meta = json.loads(r["meta"])
        qtypes.add(meta["qtype"])
        answer = r["messages"][-1]["content"]
        stated = [v for values in meta["values"].values() for v in values]
        assert stated and all(v in answer for v in stated), (answer, meta["values"])
    assert qtypes == {"relation", "attribute", "combined", "reverse_single", "reverse_multi"}


def test_card_yaml(example_build):
    text = (example_build / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n", 2)[1])
    assert header["license"] == "other"
    assert header["size_categories"] == ["n<1K"]
    assert "zh" in header["language"]
    (config,) = header["configs"]
    assert {d["split"]: d["path"] for d in config["data_files"]} == {
        "train": "data/train-*", "validation": "data/validation-*", "test": "data/test-*"}


@pytest.mark.slow  # a second full build of the example KG; same-seed bytes of the writer: core/test_writer.py (fast)
def test_same_seed_gives_identical_bytes(tmp_path, examples_dir, example_build):
    out = tmp_path / "again"
    _build(examples_dir / "kg", "--out", out, "--val-size", "0.1", "--test-size", "0.1")
    first = sorted((example_build / "data").glob("*.parquet"))
    second = sorted((out / "data").glob("*.parquet"))
    assert [f.name for f in first] == [f.name for f in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


# three builds of the real KG samples in ../shared (the bundled example and the readers' unit tests stay fast)
@pytest.mark.slow
@pytest.mark.parametrize(
    "sample, fmt",
    [("qasystem_medical_sample.json", "qasystem"), ("cmekg_train_example_sample.json", "spo"),
     ("huatuo_cmekg_style_readme_example.jsonl", "entities")],
)
def test_real_samples(samples_dir, tmp_path, sample, fmt):
    out = tmp_path / "out"
    _build(samples_dir / sample, "--out", out, "--no-dedup")
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["counters"][f"files.{fmt}"] == 1 and m["records_total"] > 0
    assert _run("validate", out).exit_code == 0


def test_broken_lines_give_rejects_and_the_build_finishes(tmp_path):
    kg = tmp_path / "kg.jsonl"
    kg.write_text(
        '{"中心词": "感冒", "症状": ["鼻塞", "流涕"], "就诊科室": ["内科"]}\n'
        '{"中心词": "流感", "症状": ["高热"\n'
        'not json at all\n'
        '{"中心词": "肺炎", "症状": ["发热", "咳嗽"]}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    _build(kg, "--out", out, "--per-entity", "1", "--system-prompt", "你是医学助手。",
           "--source-license", f"{kg}=CC-BY-4.0", "--license", "cc-by-4.0")
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    read_rejects = [r for r in rejects if r["stage"] == "read"]
    assert sorted(r["source"]["line"] for r in read_rejects) == [2, 3]
    assert all(r["source"]["file"] == str(kg) and r["reason"] == "invalid_json" for r in read_rejects)
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["rejects_by_reason"]["read/invalid_json"] == 2
    assert m["source_licenses"] == {str(kg): "CC-BY-4.0"} and m["license"] == "cc-by-4.0"
    rows = _rows(out)["train"]
    groups = [r["source"]["group"] for r in rows]
    assert len(groups) == len(set(groups))  # --per-entity 1
    assert all(r["messages"][0] == {"role": "system", "content": "你是医学助手。"} for r in rows)


def test_config_file_and_custom_templates(tmp_path, examples_dir):
    from importlib import resources

    text = resources.files("medmill.prompts").joinpath("kg_qa_templates.yaml").read_text(encoding="utf-8")
    custom = tmp_path / "mine.yaml"
    custom.write_text(text.replace('version: "1"', 'version: "7"').replace(
        '"{entity}有哪些症状？"', '"请列出{entity}的症状。"'), encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"build-kg-qa:\n  per_entity: 2\n  templates: {custom}\n", encoding="utf-8")
    out = tmp_path / "out"
    _build(examples_dir / "kg" / "diseases.jsonl", "--out", out, "--config", cfg, "--no-dedup", "--no-reverse")
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["prompts"] == [{"id": "kg_qa_templates", "version": "7"}]
    assert m["params"]["template_qa"]["per_entity"] == 2 and m["params"]["template_qa"]["reverse"] is False
    assert m["records_total"] <= 2 * 47


@pytest.mark.parametrize("case", ["missing", "unreadable", "mode"])
def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys, case):
    out = tmp_path / "out"
    if case == "missing":
        args = [tmp_path / "nope.json", "--out", out]
    elif case == "unreadable":
        bad = tmp_path / "dialogues.csv"
        bad.write_text("department,title,ask,answer\n内科,头痛,问,答\n", encoding="utf-8")
        args = [bad, "--out", out]
    else:
        kg = tmp_path / "kg.jsonl"
        kg.write_text('{"中心词": "感冒", "症状": ["鼻塞"]}\n', encoding="utf-8")
        args = [kg, "--out", out, "--mode", "bogus"]
    proc = run_medmill(monkeypatch, capsys, "build-kg-qa", *args)  # the console entry point, in-process
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_output_dir_inside_the_input_dir_is_not_read_back(tmp_path):
    kg = tmp_path / "kg"
    kg.mkdir()
    (kg / "kg.jsonl").write_text('{"中心词": "感冒", "症状": ["鼻塞", "流涕"]}\n', encoding="utf-8")
    out = kg / "out"
    _build(kg, "--out", out, "--no-dedup")
    _build(kg, "--out", out, "--no-dedup")  # the second run sees the first run's dataset dir in kg/
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [Path(i["path"]).name for i in m["inputs"]] == ["kg.jsonl"]
    assert m["rejects_total"] == 0
