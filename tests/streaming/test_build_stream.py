"""Streamed builds write exactly the dataset dir the in-memory build writes (sha256 of every file; the
manifest without timings), with 1 process or 2, many batches, many shards; and the pieces that make that
possible (splits from group sizes, the reject order per chunk) agree with their in-memory counterparts."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from medmill.builders.core.run import run_build
from medmill.builders.core.splits import assign_groups, split_by_group
from medmill.builders.core.steps import LocalExecutor
from medmill.builders.pretrain.build import PretrainBuilder
from medmill.builders.pretrain.config import PretrainConfig
from medmill.builders.streaming.batch import StepTally
from medmill.builders.streaming.build_stream import CHUNK, StreamExecutor, _ChunkedRejects
from medmill.schemas.seeded import seeded_rank
from tests.pretrain.corpus import GENERAL, MEDICAL, sentence

FOOTER = "本资料仅供医学专业人员参考，不能替代医生的诊断与治疗建议。"
COPYRIGHT = "版权所有，侵权必究。本书由示例医学出版社出版，未经许可不得复制。"


def dir_digest(out: Path) -> dict[str, str]:
    """sha256 of every file of a dataset dir; the manifest without its timings (wall clock)."""
    got = {}
    for f in sorted(out.rglob("*")):
        if not f.is_file():
            continue
        data = f.read_bytes()
        if f.name == "manifest.json":
            m = json.loads(data)
            m.pop("timings")
            data = json.dumps(m, ensure_ascii=False, sort_keys=True).encode()
        got[str(f.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return got


def _pt_inputs(root: Path, docs: int = 220) -> list[Path]:
    """JSON Lines with repeated footers (boilerplate), phone numbers (PII), exact and near copies
    across files (dedup, split of a repeated id), too-short and empty texts, a broken line; and a
    plain text book with a copyright page in many sections."""
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    texts: list[str] = []
    files = []
    for f in range(3):
        path = root / f"part{f}.jsonl"
        lines = []
        for i in range(docs // 3):
            roll = rng.random()
            if texts and roll < 0.06:
                text = rng.choice(texts)  # the same text again, maybe in another file (another split group)
            elif texts and roll < 0.12:
                text = rng.choice(texts)[:-6] + "需要复查。"
            else:
                text = "".join(sentence(rng, MEDICAL if i % 2 else GENERAL) for _ in range(rng.randint(2, 7)))
                if roll < 0.3:
                    text += "\n" + FOOTER
                elif roll < 0.34:
                    text += f"联系电话13{rng.randint(100000000, 999999999)}。"
                elif roll < 0.36:
                    text += "请问哪里买冰毒。"  # safety
                elif roll < 0.37:
                    text = "短文本。"
                elif roll < 0.39:
                    text = FOOTER
                elif roll < 0.42:
                    text = "编号：" + "，".join(str(rng.randint(10**6, 10**9)) for _ in range(30)) + "。"  # running-text rules
                elif roll < 0.44:
                    text = "The patient was given aspirin and observed for several days in the ward. " * 3
            texts.append(text)
            lines.append(json.dumps({"text": text}, ensure_ascii=False))
        if f == 1:
            lines.insert(5, "{not json")
            lines.insert(9, json.dumps({"text": "   "}))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(path)
    book = root / "book.txt"
    sections = []
    for s in range(12):
        body = "".join(sentence(rng, MEDICAL) for _ in range(rng.randint(4, 9)))
        sections.append(f"第{s + 1}节 疾病{s}\n{COPYRIGHT}\n{body}")
    book.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    files.append(book)
    return files


def _build(tmp: Path, inputs: list[Path], name: str, executor, **cfg) -> Path:
    out = tmp / name
    config = PretrainConfig(inputs=inputs, out=out, val_size=0.1, test_size=0.05, boilerplate_min_docs=4, **cfg)
    report = run_build(PretrainBuilder(), config, executor=executor, max_shard_bytes=3_000)
    assert report.manifest.records_total > 0
    return out


def test_pt_streamed_equals_in_memory(tmp_path: Path) -> None:
    inputs = _pt_inputs(tmp_path / "in")
    memory = _build(tmp_path, inputs, "memory", None)
    reference = dir_digest(memory)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    # the corpus exercises what must agree: every kind of reject, boilerplate, several splits and shards
    reasons = set(m["rejects_by_reason"])
    assert {"boilerplate/boilerplate_only", "dedup/exact_duplicate", "dedup/near_duplicate"} <= reasons, reasons
    assert any(r.startswith("read/") for r in reasons), reasons
    assert any(r.startswith("text_quality/") for r in reasons) and any(r.startswith("safety/") for r in reasons), reasons
    assert m["counters"]["boilerplate.paragraphs_removed"] > 0 and m["counters"]["pii.records_redacted"] > 0
    assert {"train", "validation", "test"} <= set(m["splits"]) and len(m["splits"]["train"]["files"]) > 3
    for workers, batch in ((1, 7), (2, 5), (2, 2_000)):
        out = _build(tmp_path, inputs, f"stream-{workers}-{batch}", StreamExecutor(workers, batch))
        assert not list(out.glob(".medmill-*")), "work files left behind"
        got = dir_digest(out)
        assert got == reference, {k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)}


@pytest.mark.slow  # ~3.5 s; the fast lane keeps test_pt_streamed_equals_in_memory and the chunk-order unit test below
def test_pt_streamed_equals_in_memory_over_many_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejects come out per chunk of the in-memory executor: with a chunk of 40 records the corpus spans
    several, and batches of 7 documents straddle the chunks of generated records."""
    import medmill.builders.streaming.build_stream as build_stream

    inputs = _pt_inputs(tmp_path / "in")
    reference = dir_digest(_build(tmp_path, inputs, "memory", LocalExecutor(batch_size=40)))
    monkeypatch.setattr(build_stream, "CHUNK", 40)
    for workers in (1, 2):
        got = dir_digest(_build(tmp_path, inputs, f"stream-{workers}", StreamExecutor(workers, 7)))
        assert got == reference, {k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)}


def test_pt_streamed_without_dedup_keeps_exact_copies_in_their_first_split(tmp_path: Path) -> None:
    """With dedup off, the writer drops repeated ids: a repeat in another file (group) must follow its
    first copy's split, as the in-memory writer does."""
    inputs = _pt_inputs(tmp_path / "in", docs=150)
    off = {"curation": {"dedup": False}, "limit": 120}
    reference = dir_digest(_build(tmp_path, inputs, "memory", None, **off))
    m = json.loads((tmp_path / "memory" / "manifest.json").read_text(encoding="utf-8"))
    assert m["rejects_by_reason"].get("write/exact_duplicate", 0) > 0
    assert dir_digest(_build(tmp_path, inputs, "stream", StreamExecutor(2, 3), **off)) == reference


def test_memory_executor_keeps_the_in_memory_path(tmp_path: Path) -> None:
    """Without the stream executor the build runs in memory (its records go through `finish`)."""
    seen = []

    class Spy(PretrainBuilder):
        def finish(self, cfg, inputs, out):
            seen.append(isinstance(out.records, list))

    inputs = _pt_inputs(tmp_path / "in", docs=60)
    run_build(Spy(), PretrainConfig(inputs=inputs, out=tmp_path / "a"), executor=LocalExecutor())
    run_build(Spy(), PretrainConfig(inputs=inputs, out=tmp_path / "b"), executor=StreamExecutor(1, 10))
    assert seen == [True, False]  # streamed, `finish` reads the records back from the spill


def _reference_assignment(sizes: dict[str, int], val: float, test: float, seed: int) -> dict[str, str]:
    """The split rule as `split_by_group` wrote it before `assign_groups` (groups sorted by hex rank)."""
    order = sorted(sizes, key=lambda g: seeded_rank(seed, g))
    total = sum(sizes.values())
    assignment: dict[str, str] = {}
    cursor = 0
    for split, target in (("test", test * total), ("validation", val * total)):
        if target <= 0:
            continue
        taken = 0
        while cursor < len(order) - 1 and (taken == 0 or taken < target):
            g = order[cursor]
            if taken > 0 and taken + sizes[g] > target * 1.5:
                break
            assignment[g] = split
            taken += sizes[g]
            cursor += 1
    return assignment


def test_assign_groups_is_the_split_rule() -> None:
    rng = random.Random(3)
    for n_groups, val, test, seed in ((80, 0.1, 0.05, 1), (300, 0.3, 0.0, 7), (5, 0.0, 0.2, 42), (40, 0.0, 0.0, 5), (2, 0.5, 0.4, 9)):
        items = [(f"g{rng.randint(0, n_groups)}", i) for i in range(500)]
        sizes: dict[str, int] = {}
        for g, _ in items:
            sizes[g] = sizes.get(g, 0) + 1
        names = list(sizes)
        chosen = assign_groups(names, [sizes[g] for g in names], val_size=val, test_size=test, seed=seed)
        expect = _reference_assignment(sizes, val, test, seed)
        assert {names[i]: split for i, split in chosen.items()} == expect
        splits = split_by_group(items, lambda t: t[0], val_size=val, test_size=test, seed=seed)
        for split, members in splits.items():
            assert all(expect.get(g, "train") == split for g, _ in members)


def test_chunked_rejects_follow_the_in_memory_order(tmp_path: Path) -> None:
    """Rejects of two map steps come out per CHUNK inputs, step by step, whatever the batches."""
    sink = _ChunkedRejects(tmp_path / "r.jsonl", 2)
    seen = 0
    expect_by_chunk: dict[int, list[list[str]]] = {}
    rng = random.Random(1)
    while seen < 2 * CHUNK + 10:
        n = rng.randint(1, CHUNK // 2)
        tallies = [StepTally("a"), StepTally("b")]
        for k, t in enumerate(tallies):
            for at in sorted(rng.sample(range(n), min(n, 3))):
                line = f"{k}:{seen + at}"
                t.rejects.append(line)
                t.ordinals.append(at)
                expect_by_chunk.setdefault((seen + at) // CHUNK, [[], []])[k].append(line)
        sink.add(tallies, n, ordinals=True)
        seen += n
    lines = sink.close().read_text().splitlines()
    assert lines == [line for c in sorted(expect_by_chunk) for step in expect_by_chunk[c] for line in step]


@pytest.mark.parametrize("batch", [1, 7, 2_000, 60_000])
def test_batches_never_straddle_chunks(batch: int) -> None:
    assert CHUNK % StreamExecutor(1, batch).batch_items == 0


def _tasks(tmp: Path, name: str, executor, **cfg) -> Path:
    from medmill.builders.tasks.build import TasksBuilder, TasksConfig

    out = tmp / name
    run_build(TasksBuilder(), TasksConfig(out=out, val_size=0.1, **cfg), executor=executor, max_shard_bytes=2_000)
    return out


# mcq ~6 s: the fast lane keeps ner
@pytest.mark.parametrize("task", [pytest.param("mcq", marks=pytest.mark.slow), "ner"])
def test_tasks_streamed_equal_in_memory(tmp_path: Path, examples_dir: Path, task: str) -> None:
    """The map-only tasks stream their records: mcq over the example KG (its records' meta facts reach
    the dedup fact guard), ner over the example texts with its lexicon."""
    if task == "mcq":
        cfg = {"task": "mcq", "inputs": [examples_dir / "kg"]}
    else:
        cfg = {"task": "ner", "inputs": [examples_dir / "texts"], "kg": [examples_dir / "kg"]}
    memory = _tasks(tmp_path, "memory", None, **cfg)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    assert m["records_total"] >= 10 and len(m["splits"]["train"]["files"]) >= 2, m["splits"]
    reference = dir_digest(memory)
    for workers, batch in ((1, 3), (2, 16)):
        got = dir_digest(_tasks(tmp_path, f"stream-{workers}", StreamExecutor(workers, batch), **cfg))
        assert got == reference, {k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)}


def _dialogue_inputs(root: Path) -> list[Path]:
    """Toyhom CSV (ragged rows, exact duplicates, cleaning), BenTsao (prefix copies across the file),
    GenMedGPT (an English file), Huatuo JSON Lines with English strays (wrong_language)."""
    from tests.dialogue.corpora import (
        write_bentsao,
        write_genmedgpt,
        write_toyhom_csv,
    )

    root.mkdir(parents=True, exist_ok=True)
    write_toyhom_csv(root / "toyhom.csv", 90, seed=1, ragged_every=13, duplicate_every=9)
    write_bentsao(root / "bentsao.json", 40, seed=2)
    write_genmedgpt(root / "genmed.json", 25, seed=3)
    rng = random.Random(4)
    lines = []
    for i in range(70):
        if i % 23 == 5:
            rec = {"instruction": f"Doctor, what should I do about case {i}?", "input": "", "output": f"Rest and fluids for case {i}."}
        else:
            rec = {"instruction": f"第{i}例{sentence(rng, MEDICAL)}该怎么办？", "input": "", "output": sentence(rng, MEDICAL) * 2}
        lines.append(json.dumps(rec, ensure_ascii=False))
    (root / "huatuo.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [root / n for n in ("toyhom.csv", "bentsao.json", "genmed.json", "huatuo.jsonl")]


def _dialogue(tmp: Path, inputs: list[Path], name: str, executor, **cfg) -> Path:
    from medmill.builders.dialogue.build import DialogueBuilder, DialogueConfig

    out = tmp / name
    run_build(DialogueBuilder(), DialogueConfig(inputs=inputs, out=out, val_size=0.1, test_size=0.1, **cfg),
              executor=executor, max_shard_bytes=3_000)
    return out


@pytest.mark.parametrize("cfg", [
    pytest.param({}, id="defaults"),
    # ~4.5 s; the fast lane keeps the defaults case
    pytest.param({"read": {"merge_prefixes": False}, "limit": 250}, id="no-merge-limit", marks=pytest.mark.slow),
])
def test_dialogue_streamed_equals_in_memory(tmp_path: Path, cfg: dict) -> None:
    inputs = _dialogue_inputs(tmp_path / "in")
    memory = _dialogue(tmp_path, inputs, "memory", None, **cfg)
    m = json.loads((memory / "manifest.json").read_text(encoding="utf-8"))
    reasons = set(m["rejects_by_reason"])
    assert "clean/wrong_language" in reasons and any(r.startswith("read/") for r in reasons), reasons
    if not cfg:
        assert "merge/prefix_copy" in reasons and m["counters"]["prefix_copies_merged"] > 0, reasons
    assert len(m["stats"]["inputs"]) == 4 and len(m["splits"]["train"]["files"]) > 2
    reference = dir_digest(memory)
    for workers, batch in ((1, 4), (2, 25)):
        got = dir_digest(_dialogue(tmp_path, inputs, f"stream-{workers}", StreamExecutor(workers, batch), **cfg))
        assert got == reference, {k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)}


def test_pt_streamed_without_survivors_fails_as_in_memory(tmp_path: Path) -> None:
    """Nothing survives (every document is the same footer): the same one-line error, --out left as it
    was (here: never created), the same rejects beside it."""
    from medmill.schemas.errors import MedmillError

    src = tmp_path / "in" / "footers.jsonl"
    src.parent.mkdir()
    src.write_text("".join(json.dumps({"text": f"{FOOTER}\n{COPYRIGHT}"}, ensure_ascii=False) + "\n" for _ in range(12)), encoding="utf-8")
    got = {}
    for name, executor in (("memory", None), ("stream", StreamExecutor(2, 5))):
        out = tmp_path / name
        with pytest.raises(MedmillError) as e:
            run_build(PretrainBuilder(), PretrainConfig(inputs=[src], out=out, boilerplate_min_docs=3), executor=executor)
        assert not out.exists()
        got[name] = (str(e.value).replace(str(out), "OUT"), (tmp_path / f"{name}.rejects.jsonl").read_bytes())
    assert "no records survived" in got["memory"][0] and got["memory"] == got["stream"]
