"""Generation as steps the executor runs, and builders without run state.

A builder's `generation` steps go through the same executor as curation: item-wise generation is a
picklable map step that the executor batches (and a process or Ray executor ships to workers), so an
executor that pickles every map step and batch, or counts the batches it runs, must see generation
batches and give the same dataset dir. After a build the builder object holds nothing of the run.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medmill.builders.core.builder import Builder
from medmill.builders.core.collect import RejectSink
from medmill.builders.core.run import run_build
from medmill.builders.core.steps import LocalExecutor, MapStep, RunResult
from medmill.schemas.dataset_dir import iter_rows, read_manifest
from tests.dialogue import corpora


class PicklingCountingExecutor(LocalExecutor):
    """LocalExecutor whose map stages run on pickled copies of the steps and of every batch (as a
    worker process would get them), counting the batches each stage ran."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.batches: Counter = Counter()

    def _map_stage(self, steps: list[MapStep], run: RunResult, rejects: RejectSink) -> None:
        names = tuple(s.name for s in steps)
        self.batches[names] += -(-len(run.records) // self.batch_size)
        shipped = pickle.loads(pickle.dumps(steps))
        run.records = pickle.loads(pickle.dumps(run.records))
        super()._map_stage(shipped, run, rejects)


def _dir(out: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str], dict[str, Any]]:
    rows = [(split, row) for split, _shard, _i, row in iter_rows(out)]
    rejects = (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    manifest = read_manifest(out) or {}
    return rows, rejects, {k: manifest[k] for k in ("counters", "rejects_by_reason", "stats", "records_total")}


def _assert_stateless(builder: Builder[Any]) -> None:
    assert vars(builder) == {}, f"{type(builder).__name__} keeps run state: {sorted(vars(builder))}"
    again = pickle.loads(pickle.dumps(builder))
    assert type(again) is type(builder) and vars(again) == {}


def _tasks_mcq(examples_dir: Path, out: Path):
    from medmill.builders.tasks.build import TasksBuilder, TasksConfig

    return TasksBuilder(), TasksConfig(task="mcq", inputs=[examples_dir / "kg"], out=out, limit=40)


def _kg_template(examples_dir: Path, out: Path):
    from medmill.builders.kg_qa.build import KGQABuilder, KGQAConfig

    return KGQABuilder(), KGQAConfig(inputs=[examples_dir / "kg"], out=out, limit=30, val_size=0.1)


def _dialogue(tmp: Path, out: Path):
    from medmill.builders.dialogue.build import DialogueBuilder, DialogueConfig

    corpus = tmp / "corpus"
    if not corpus.exists():
        corpus.mkdir()
        corpora.write_toyhom_csv(corpus / "内科.csv", 120, ragged_every=40, duplicate_every=25)
        corpora.write_huatuo_jsonl(corpus / "huatuo.jsonl", 30)
    return DialogueBuilder(), DialogueConfig(inputs=[corpus], out=out)


@pytest.mark.parametrize("make, stages", [
    pytest.param(_tasks_mcq, [("generate",)], marks=pytest.mark.slow),  # ~3 s; kg and dialogue stay in the fast lane
    (_kg_template, [("generate",)]),
    (_dialogue, [("generate",)]),
])
def test_generation_runs_batched_through_the_executor_with_the_same_result(tmp_path: Path, examples_dir: Path, make, stages):
    builder, cfg = make(examples_dir if make is not _dialogue else tmp_path, tmp_path / "one")
    run_build(builder, cfg)  # the default LocalExecutor: one batch
    executor = PicklingCountingExecutor(batch_size=7)
    builder2, cfg2 = make(examples_dir if make is not _dialogue else tmp_path, tmp_path / "many")
    report = run_build(builder2, cfg2, executor=executor)
    # generation ran as map-step batches (before curation's validate/quality/... stage)
    for names in stages:
        assert executor.batches[names] >= 2, executor.batches
    assert any("validate" in names for names in executor.batches)
    # ... and the dataset dir is the one a single batch in this process makes: records, splits,
    # rejects in order, counters (generation counters without a step prefix) and builder stats
    assert _dir(tmp_path / "many") == _dir(tmp_path / "one")
    assert not any(k.startswith("generate") for k in report.manifest.counters)
    _assert_stateless(builder2)


def test_dialogue_per_file_table_counts_generation_and_curation_drops(tmp_path: Path):
    builder, cfg = _dialogue(tmp_path, tmp_path / "out")
    report = run_build(builder, cfg, executor=LocalExecutor(batch_size=11))
    table = {r["file"]: r for r in report.manifest.stats["inputs"]}
    toyhom = table["corpus/内科.csv"]
    assert toyhom["rows_read"] == 120 and toyhom["rejected"]["ragged_row"] == 3
    assert any(k.startswith("dedup:") for k in toyhom["rejected"])  # curation drops, counted per file
    for row in table.values():
        assert row["records_kept"] + sum(row["rejected"].values()) == row["rows_read"]
    assert sum(r["records_kept"] for r in table.values()) == report.manifest.records_total
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| `corpus/内科.csv` | toyhom |" in card


def test_pretrain_builders_keep_their_reports_in_the_collector(tmp_path: Path):
    from medmill.builders.pretrain.build import MixBuilder, PretrainBuilder
    from medmill.builders.pretrain.config import MixConfig, PretrainConfig
    from tests.pretrain.corpus import GENERAL, MEDICAL, write_corpus

    dirs = []
    for name, topics, n in (("d", MEDICAL, 30), ("g", GENERAL, 60)):
        builder = PretrainBuilder()
        out = tmp_path / name
        report = run_build(builder, PretrainConfig(inputs=[write_corpus(tmp_path / f"{name}.jsonl", n, topics, seed=1)], out=out, val_size=0))
        assert report.manifest.stats["boilerplate"]["min_docs"] >= 1 and "boilerplate" not in report.manifest.curation
        card = (out / "README.md").read_text(encoding="utf-8")
        assert "### Build statistics" in card and "| boilerplate | paragraphs_removed |" in card
        _assert_stateless(builder)
        dirs.append(out)
    mix = MixBuilder()
    report = run_build(mix, MixConfig(inputs=dirs, shares={str(dirs[0]): 0.5, str(dirs[1]): 0.5}, out=tmp_path / "mix", val_size=0))
    assert set(report.manifest.stats["mix"]["sources"]) == {str(d) for d in dirs} and "mix" not in report.manifest.curation
    assert "share reached" in (tmp_path / "mix" / "README.md").read_text(encoding="utf-8")
    _assert_stateless(mix)
    from medmill.builders.publish.report import render_report

    assert "mix (build)" in render_report([tmp_path / "mix"])  # the report page lists the builder's tables too


def test_every_builder_starts_without_state_and_pickles():
    from medmill.builders.book_qa.build import BookQABuilder
    from medmill.builders.dialogue.build import DialogueBuilder
    from medmill.builders.kg_qa.build import KGQABuilder
    from medmill.builders.lit_qa.build import LitQABuilder
    from medmill.builders.prefs.build import PrefsBuilder
    from medmill.builders.pretrain.build import MixBuilder, PretrainBuilder
    from medmill.builders.self_instruct.build import SelfInstructBuilder
    from medmill.builders.tasks.build import TasksBuilder

    for cls in (BookQABuilder, DialogueBuilder, KGQABuilder, LitQABuilder, PrefsBuilder, MixBuilder,
                PretrainBuilder, SelfInstructBuilder, TasksBuilder):
        _assert_stateless(cls())


def test_item_wise_generation_steps_give_the_same_records_in_any_slices(examples_dir: Path):
    from medmill.builders.readers.kg import read_kg
    from medmill.builders.tasks.mcq import MCQConfig, MCQStep, option_pools

    entities = read_kg([examples_dir / "kg"]).entities
    cfg = MCQConfig(seed=3)
    step = MCQStep(cfg, option_pools(entities, cfg))
    whole = step(list(entities))
    shipped = pickle.loads(pickle.dumps(step))
    parts = [shipped(list(entities[i : i + 5])) for i in range(0, len(entities), 5)]
    assert [r.id for r in whole.records] == [r.id for p in parts for r in p.records]
    assert whole.counters == sum((p.counters for p in parts), Counter())
    assert whole.records
