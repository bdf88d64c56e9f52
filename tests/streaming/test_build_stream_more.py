"""The builders streamed after build-pt, -dialogue and -tasks mcq/ner write exactly the dataset dir
their in-memory build writes (sha256 of every file, the manifest without timings), with 1 process or 2
and batches that cut the input at odd places: build-kg-qa in template mode (the questions across the
graph come last, as in memory), build-prefs --strategy corrupt (perturbations chosen in item order in
the driver, made on the workers), build-tasks --task cls (the label choice made in the driver), and
build-pt --mix (picks read back from row files in the plan's order)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmill.builders.core.run import run_build
from medmill.builders.kg_qa.build import KGQABuilder, KGQAConfig
from medmill.builders.streaming.build_stream import StreamExecutor
from tests.streaming.test_build_stream import dir_digest


def _differs(reference: dict[str, str], got: dict[str, str]) -> set[str]:
    return {k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)}


def kg_with_rejects(examples_dir: Path, root: Path) -> list[Path]:
    """The example KG plus a file a real crawl has: a broken line, an entity with nothing to ask, an
    attribute too long to cut, a phone number in a text (PII), and an entity that repeats another's
    facts under another name (near-duplicate answers)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        {"中心词": "空条目", "类型": "疾病"},
        {"中心词": "长文本病", "类型": "疾病", "简介": "很长的说明" * 500},
        {"中心词": "咨询病", "类型": "疾病", "简介": "如有疑问请致电13912345678咨询门诊。", "就诊科室": ["内科"]},
    ]
    first = json.loads((examples_dir / "kg" / "diseases.jsonl").read_text(encoding="utf-8").splitlines()[0])
    rows.append({**first, "中心词": "普通感冒样病"})
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(2, "{not json")
    (root / "extra.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [examples_dir / "kg", root / "extra.jsonl"]


def _kg_qa(tmp: Path, name: str, executor, **cfg) -> Path:
    out = tmp / name
    report = run_build(KGQABuilder(), KGQAConfig(out=out, val_size=0.1, test_size=0.1, **cfg), executor=executor,
                       max_shard_bytes=4_000)
    assert report.manifest.records_total > 0
    return out


@pytest.mark.parametrize("cfg", [
    pytest.param({}, id="defaults", marks=pytest.mark.slow),  # ~6 s; the fast lane keeps capped-no-dedup
    pytest.param({"template_qa": {"per_entity": 3}, "curation": {"dedup": False}}, id="capped-no-dedup"),
])
def test_kg_qa_template_streamed_equals_in_memory(tmp_path: Path, examples_dir: Path, cfg: dict) -> None:
    cfg = {"inputs": kg_with_rejects(examples_dir, tmp_path / "in"), **cfg}
    memory = _kg_qa(tmp_path, "memory", None, **cfg)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    counters = m["counters"]
    # the example KG exercises what must agree: questions across the graph (last), several splits and shards
    assert counters["records.reverse_single"] > 0 and counters["records.relation"] > 0, counters
    assert {"train", "validation", "test"} <= set(m["splits"]) and len(m["splits"]["train"]["files"]) >= 2, m["splits"]
    reasons = set(m["rejects_by_reason"])
    assert counters["pii.records_redacted"] > 0
    assert {"build/no_usable_facts", "build/text_too_long"} <= reasons and any(r.startswith("read/") for r in reasons), reasons
    reference = dir_digest(memory)
    for workers, batch in ((1, 3), (2, 7)):
        out = _kg_qa(tmp_path, f"stream-{workers}", StreamExecutor(workers, batch), **cfg)
        assert not list(out.glob(".medmill-*")), "work files left behind"
        got = dir_digest(out)
        assert got == reference, _differs(reference, got)


def _prefs(tmp: Path, inputs: list[Path], name: str, executor, **cfg) -> Path:
    from medmill.builders.prefs.build import PrefsBuilder
    from medmill.builders.prefs.config import PrefsConfig

    out = tmp / name
    report = run_build(PrefsBuilder(), PrefsConfig(inputs=inputs, out=out, val_size=0.1, **cfg), executor=executor,
                       max_shard_bytes=6_000)
    assert report.manifest.records_total > 0
    return out


def prefs_inputs(examples_dir: Path, root: Path) -> list[Path]:
    """A build-kg-qa dir of the example KG (its meta drives fact swaps), and a prompt file with what
    else a user brings: given pairs, prompts without an answer, a repeated prompt, a broken line, an
    answer no perturbation changes."""
    kg_out = root / "kg_qa"
    run_build(KGQABuilder(), KGQAConfig(inputs=[examples_dir / "kg"], out=kg_out, template_qa={"per_entity": 4}),
              executor=None)
    rows = [
        {"question": "发烧三天怎么办？", "answer": "多喝水，注意休息；高热不退请及时就医。"},
        {"question": "咳嗽能吃阿莫西林吗？", "response_chosen": "需由医生判断是否为细菌感染后再用抗生素。", "response_rejected": "可以，随便吃。"},
        {"question": "头痛要做什么检查？"},
        {"question": "发烧三天怎么办？", "answer": "另一份答案。"},
        {"question": "？", "answer": "。"},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(3, "{not json")
    prompts = root / "prompts.jsonl"
    prompts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [prompts, kg_out]


@pytest.mark.parametrize("cfg", [
    pytest.param({}, id="defaults", marks=pytest.mark.slow),  # ~6 s; the fast lane keeps limit-two
    pytest.param({"limit": 150, "perturbations": ["fact_swap", "truncate"], "curation": {"dedup": False}}, id="limit-two"),
])
def test_prefs_corrupt_streamed_equals_in_memory(tmp_path: Path, examples_dir: Path, cfg: dict) -> None:
    inputs = prefs_inputs(examples_dir, tmp_path / "in")
    memory = _prefs(tmp_path, inputs, "memory", None, **cfg)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    counters, reasons = m["counters"], set(m["rejects_by_reason"])
    assert counters["perturbation.fact_swap"] > 0 and counters["perturbation.truncate"] > 0, counters
    assert counters["pairs.given"] == 1 and counters["inputs.duplicate_prompts"] == 1, counters
    assert {"corrupt/no_reference", "select/duplicate_prompt"} <= reasons and any(r.startswith("read/") for r in reasons), reasons
    assert len(m["splits"]["train"]["files"]) >= 2, m["splits"]
    reference = dir_digest(memory)
    for workers, batch in ((1, 4), (2, 9)):
        out = _prefs(tmp_path, inputs, f"stream-{workers}", StreamExecutor(workers, batch), **cfg)
        assert not list(out.glob(".medmill-*")), "work files left behind"
        got = dir_digest(out)
        assert got == reference, _differs(reference, got)


def cls_inputs(root: Path, shared: Path | None) -> list[Path]:
    """A Toyhom-style department CSV (UTF-8): departments from common to rare, a question too long, a
    row without a department, repeated questions; and the real Toyhom sample (GB18030) when present."""
    import random

    rng = random.Random(5)
    root.mkdir(parents=True, exist_ok=True)
    departments = {"心血管科": 40, "神经科": 25, "消化科": 18, "皮肤科": 9, "眼科": 2}
    symptoms = ["头痛", "胸闷", "腹泻", "皮疹", "视物模糊", "心慌", "失眠", "反酸", "瘙痒", "乏力"]
    rows = ["department,title,ask,answer"]
    for dept, n in departments.items():
        for i in range(n):
            ask = f"{rng.choice(symptoms)}{rng.randint(1, 9)}天了，伴有{rng.choice(symptoms)}，第{i}次来问，需要做什么检查？"
            rows.append(f"{dept},{ask[:8]},{ask},建议到{dept}就诊，必要时做相关检查。")
    rows.append("神经科,很长的问题," + "头痛" * 700 + ",建议就诊。")
    rows.append(",没有科室,我该挂哪个科？,看情况。")
    rows += rows[3:6]  # the same questions again (exact duplicates)
    path = root / "departments.csv"
    head, body = rows[0], rows[1:]
    rng.shuffle(body)
    path.write_text("\n".join([head, *body]) + "\n", encoding="utf-8")
    return [path] + ([shared / "toyhom_IM_sample.csv"] if shared and (shared / "toyhom_IM_sample.csv").is_file() else [])


@pytest.mark.parametrize("cls", [
    pytest.param({}, id="defaults", marks=pytest.mark.slow),  # ~5 s; the fast lane keeps capped
    pytest.param({"max_per_label": 12, "min_per_label": 3}, id="capped"),
])
def test_tasks_cls_streamed_equals_in_memory(tmp_path: Path, cls: dict) -> None:
    from tests.conftest import SHARED_SAMPLES
    from tests.streaming.test_build_stream import _tasks

    cfg = {"task": "cls", "inputs": cls_inputs(tmp_path / "in", SHARED_SAMPLES), "cls": cls, "test_size": 0.2}
    memory = _tasks(tmp_path, "memory", None, **cfg)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    reasons, counters = set(m["rejects_by_reason"]), m["counters"]
    assert {"build/rare_label", "build/question_too_long"} <= reasons and any(r.startswith("read/") for r in reasons), reasons
    assert counters["labels"] >= 3 and (counters.get("skipped.over_max_per_label", 0) > 0) == bool(cls), counters
    assert {"train", "validation", "test"} <= set(m["splits"]) and len(m["splits"]["train"]["files"]) >= 2, m["splits"]
    reference = dir_digest(memory)
    for workers, batch in ((1, 4), (2, 10)):
        out = _tasks(tmp_path, f"stream-{workers}", StreamExecutor(workers, batch), **cfg)
        got = dir_digest(out)
        assert got == reference, _differs(reference, got)


def mix_sources(tmp: Path) -> tuple[Path, Path]:
    """Two build-pt dirs of several shards: a small domain corpus (the scarce source, repeated up to the
    epoch cap) and a larger general one (downsampled)."""
    from medmill.builders.pretrain.build import PretrainBuilder
    from medmill.builders.pretrain.config import PretrainConfig
    from tests.pretrain.corpus import GENERAL, MEDICAL, write_corpus

    dirs = []
    for name, docs, topics, seed in (("domain", 25, MEDICAL, 1), ("general", 250, GENERAL, 2)):
        src = write_corpus(tmp / f"{name}.jsonl", docs, topics, seed=seed)
        out = tmp / name
        run_build(PretrainBuilder(), PretrainConfig(inputs=[src], out=out, val_size=0.1), executor=None, max_shard_bytes=4_000)
        dirs.append(out)
    return dirs[0], dirs[1]


def test_pt_mix_streamed_equals_in_memory(tmp_path: Path) -> None:
    from medmill.builders.pretrain.build import MixBuilder
    from medmill.builders.pretrain.config import MixConfig

    domain, general = mix_sources(tmp_path / "src")

    def mix(name: str, executor, **cfg) -> Path:
        out = tmp_path / name
        config = MixConfig(inputs=[domain, general], shares={str(domain): 0.3, str(general): 0.7}, out=out,
                           max_epochs=2.5, val_size=0.1, seed=5, **cfg)
        run_build(MixBuilder(), config, executor=executor, max_shard_bytes=5_000)
        return out

    memory = mix("memory", None)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    sources = m["stats"]["mix"]["sources"]
    # a repeated scarce source (copies with their own ids), a downsampled one, several shards per split
    assert sources[str(domain)]["epochs"] > 2 and sources[str(general)]["epochs"] < 1, sources
    assert len(m["splits"]["train"]["files"]) >= 2 and "validation" in m["splits"], m["splits"]
    reference = dir_digest(memory)
    for workers, batch in ((1, 7), (2, 40)):
        got = dir_digest(mix(f"stream-{workers}", StreamExecutor(workers, batch)))
        assert got == reference, _differs(reference, got)


def test_cli_kg_qa_streams_with_workers_and_shows_records_per_stage(tmp_path: Path, examples_dir: Path) -> None:
    """`medmill build-kg-qa ... --workers 2` builds streamed and its summary has records/s per stage (the
    dir equals the in-memory one: test_kg_qa_template_streamed_equals_in_memory)."""
    from typer.testing import CliRunner

    import medmill.cli

    medmill.cli._register()
    out = tmp_path / "out"
    r = CliRunner().invoke(medmill.cli.app, ["build-kg-qa", str(examples_dir / "kg"), "--out", str(out), "--per-entity", "3",
                                             "--workers", "2"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "streaming, 2 processes" in r.output
    for stage in ("generate (items)", "validate", "quality", "dedup", "write"):
        assert f"records/s {stage}" in r.output, r.output
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["records_total"] > 100


@pytest.mark.parametrize(("workers", "batch"), [(2, 2_000), pytest.param(1, 3, marks=pytest.mark.slow)])  # ~2 s a build
def test_tasks_rc_streamed_equals_in_memory(tmp_path: Path, examples_dir: Path, workers: int, batch: int) -> None:
    """rc's LLM step runs on the workers of the stream (the test server answers): the same dir, the same
    calls, as in memory; with a concurrency below the worker count it builds in memory."""
    from medmill.builders.tasks.build import TasksBuilder, TasksConfig
    from tests.llm_server import FakeLLMServer
    from tests.streaming.test_build_stream import _tasks
    from tests.streaming.test_streaming import digest  # without the LLM cache and the calls' wall time
    from tests.tasks.test_build_tasks import rc_model

    with FakeLLMServer(responder=rc_model) as server:
        cfg = {"task": "rc", "inputs": [examples_dir / "texts"], "test_size": 0.2,
               "llm": {"base_url": server.base_url, "model": "fake", "concurrency": 4}}
        memory = _tasks(tmp_path, "memory", None, **cfg)
        calls = len(server.bodies())
        m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
        assert m["usage"]["calls_sent"] == calls >= 8 and "build/answer_not_in_text" in m["rejects_by_reason"], m["usage"]
        reference = digest(memory)
        got = digest(_tasks(tmp_path, "stream", StreamExecutor(workers, batch), **cfg))
        assert got == reference, _differs(reference, got)
        assert len(server.bodies()) == 2 * calls  # each build paid its own calls (its own cache), no more
    low = TasksConfig(out=tmp_path / "x", **{**cfg, "llm": {**cfg["llm"], "concurrency": 1}})
    ctx = type("Ctx", (), {"workers": 2})()
    assert TasksBuilder().read_stream(low, ctx, tmp_path, 2_000) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "workers", "batch"), [
    ({"mix": {"template": 0.5, "llm": 0.5}}, 2, 2_000),
    ({"mix": {"template": 0.5, "llm": 0.5}}, 1, 3),
    ({"mode": "llm"}, 2, 5),
])
def test_kg_qa_llm_and_mix_streamed_equal_in_memory(tmp_path: Path, mode: dict, workers: int, batch: int) -> None:
    """LLM and mixed modes stream in the in-memory steps' order (template records and their rejects, the
    entities with no usable fact, then the LLM's records and rejects); the test server answers."""
    from tests.kg_qa.test_kg_qa_llm import scenario_model, write_kg
    from tests.llm_server import FakeLLMServer
    from tests.streaming.test_streaming import digest  # without the LLM cache and the calls' wall time

    kg = write_kg(tmp_path / "kg.jsonl")
    with open(kg, "a", encoding="utf-8") as f:  # entities with nothing the LLM could write about
        for name in ("无事实病甲", "无事实病乙", "无事实病丙", "无事实病丁", "无事实病戊"):
            f.write(json.dumps({"中心词": name, "类型": "疾病"}, ensure_ascii=False) + "\n")
    with FakeLLMServer(responder=scenario_model) as server:
        cfg = {"inputs": [kg], **mode, "seed": 3, "llm": {"base_url": server.base_url, "model": "fake-med", "concurrency": 4},
               "llm_qa": {"per_entity": 3}, "curation": {"dedup": False}}
        memory = _kg_qa(tmp_path, "memory", None, **cfg)
        calls = len(server.bodies())
        m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
        reasons = set(m["rejects_by_reason"])
        assert m["usage"]["calls_sent"] == calls > 0 and {"build/meta_talk", "build/no_usable_facts"} <= reasons, (m["usage"], reasons)
        assert m["counters"]["entities_llm"] > 0 and (m["counters"].get("entities_template", 0) > 0) == ("mix" in mode), m["counters"]
        reference = digest(memory)
        got = digest(_kg_qa(tmp_path, "stream", StreamExecutor(workers, batch), **cfg))
        assert got == reference, _differs(reference, got)
        assert len(server.bodies()) == 2 * calls


def test_prefs_judge_streamed_equals_in_memory(tmp_path: Path, llm_server) -> None:
    """The judge strategy's LLM steps (two candidate models, then the judge) run on the
    workers of the stream: the same dir and the same calls as in memory, ties and missing scores rejected
    in the same order."""
    from medmill.builders.llm.types import LLMSettings
    from tests.llm.test_llm_workers import digest_without_wall_times as digest  # per model, as the calls took
    from tests.prefs.test_build_prefs import QUESTIONS, responder
    from tests.prefs.test_prefs_support import write_jsonl

    llm_server.responder = responder
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"question": f"{q}（{i}）", "answer": f"参考答案：{q}"}
                                                 for i in range(2) for q in QUESTIONS])

    def model(name: str) -> LLMSettings:
        return LLMSettings(base_url=llm_server.base_url, model=name, concurrency=4, max_retries=0, max_reasks=0)

    cfg = {"strategy": "judge", "candidates": [model("good-model"), model("bad-model")], "judge": model("judge"),
           "curation": {"dedup": False}}
    memory = _prefs(tmp_path, [prompts], "memory", None, **cfg)
    calls = len(llm_server.log)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    assert {"judge/tie", "judge/missing_score"} <= set(m["rejects_by_reason"]) and m["records_total"] >= 4, m["rejects_by_reason"]
    reference = digest(memory)
    got = digest(_prefs(tmp_path, [prompts], "stream", StreamExecutor(2, 2_000), **cfg))
    assert got == reference, _differs(reference, got)
    assert len(llm_server.log) == 2 * calls


def test_pt_mix_builds_in_memory_when_workers_may_not_see_this_disk(tmp_path: Path) -> None:
    """Streamed, --mix workers read the sources' row files from the driver's work dir: on a remote executor
    (Ray) the mix builds in memory instead."""
    from medmill.builders.core.builder import BuildContext
    from medmill.builders.pretrain.build import MixBuilder
    from medmill.builders.pretrain.config import MixConfig

    domain, general = mix_sources(tmp_path / "src")
    cfg = MixConfig(inputs=[domain, general], shares={str(domain): 0.5, str(general): 0.5}, out=tmp_path / "o")
    (tmp_path / "w").mkdir()
    assert MixBuilder().read_stream(cfg, BuildContext(tmp_path / "o", remote=True), tmp_path / "w", 40) is None
    assert MixBuilder().read_stream(cfg, BuildContext(tmp_path / "o"), tmp_path / "w", 40) is not None
