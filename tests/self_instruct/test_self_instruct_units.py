"""Self-instruct pieces: seed formats, Chinese-aware novelty, category balance, deterministic requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmill.builders.llm.prompts import load_prompt
from medmill.builders.llm.types import LLMResult
from medmill.builders.self_instruct.balance import DEFAULT_CATEGORIES, CategoryBalance, merge_categories
from medmill.builders.self_instruct.generate import GenerationSettings, SelfInstructLoop, TaskBatch
from medmill.builders.self_instruct.novelty import NoveltyIndex
from medmill.builders.self_instruct.seeds import read_seeds
from medmill.schemas.errors import MedmillError
from tests.self_instruct.fake_model import SEEDS, self_instruct_model, write_seeds


def test_medicalgpt_zh_seed_file_gives_categories_and_patient_questions(tmp_path: Path) -> None:
    read = read_seeds([write_seeds(tmp_path / "dialogue_seed_task.json")])
    assert [(s.category, s.question) for s in read.seeds] == [(c, q) for c, q, _ in SEEDS]
    assert read.seeds[0].line == 2 and read.seeds[0].answer.startswith("流鼻血")


def test_real_seed_sample(samples_dir: Path) -> None:
    read = read_seeds([samples_dir / "medicalgpt_zh_dialogue_seed_task_sample.json"])
    assert read.seeds and not read.rejects
    assert all(s.category and s.answer for s in read.seeds)
    assert {"治疗方案", "病因分析"} <= {s.category for s in read.seeds}


def test_alpaca_jsonl_text_and_bad_records(tmp_path: Path) -> None:
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([
        {"instruction": "请解释高血压患者为什么要限制食盐摄入？", "input": "", "output": "钠摄入过多会升高血压。"},
        {"instruction": "根据病历判断可能的诊断。", "input": "男，60岁，胸痛两小时。", "output": "急性冠脉综合征可能。"},
        {"input": "<无输入>", "output": "x"},
        42,
    ], ensure_ascii=False), encoding="utf-8")
    lines = tmp_path / "instructions.jsonl"
    lines.write_text('{"instruction": "糖尿病人能吃西瓜吗？"}\n"孕妇感冒了能吃什么药？"\n{broken\n', encoding="utf-8")
    text = tmp_path / "instructions.txt"
    text.write_text("小孩发烧怎么办？\n\n老人便秘怎么调理？\n", encoding="utf-8")
    read = read_seeds([alpaca, lines, text])
    questions = [s.question for s in read.seeds]
    assert questions == ["请解释高血压患者为什么要限制食盐摄入？", "根据病历判断可能的诊断。\n男，60岁，胸痛两小时。",
                         "糖尿病人能吃西瓜吗？", "孕妇感冒了能吃什么药？", "小孩发烧怎么办？", "老人便秘怎么调理？"]
    assert all(s.category is None for s in read.seeds)
    assert sorted((r.reason, Path(r.source.file).name, r.source.line) for r in read.rejects) == [
        ("invalid_json", "instructions.jsonl", 3), ("no_instruction", "alpaca.json", 1), ("not_a_seed", "alpaca.json", 1)]
    with pytest.raises(MedmillError, match="no seed tasks"):
        read_seeds([tmp_path / "empty.json"]) if (tmp_path / "empty.json").write_text("[]") else None


def test_novelty_catches_chinese_near_copies_without_segmentation() -> None:
    index = NoveltyIndex(threshold=0.6)
    original = "孩子三岁发烧三十九度，可以吃布洛芬混悬液吗？吃多少合适？"
    index.add(original, "seed:1")
    index.add("老人夜里咳嗽得厉害，痰里带血丝，需要做胸部CT吗？", "seed:2")
    same = index.nearest(original)
    assert same.similarity == 1.0 and same.label == "seed:1"
    edited = index.nearest("孩子三岁发烧三十九度了，可以吃布洛芬混悬液吗？应该吃多少合适？")
    assert edited.label == "seed:1" and edited.similarity >= 0.6
    novel, near = index.is_novel("我母亲六十八岁，饭后胃部隐隐作痛，需要做胃镜吗？")
    assert novel and near.similarity < 0.3


def test_balance_steers_to_the_least_filled_category() -> None:
    balance = CategoryBalance(["甲", "乙", "丙"])
    for _ in range(4):
        balance.add("甲")
    balance.add("乙")
    assert balance.plan(4, per_request=2, need=100) == [("丙", 2), ("乙", 2), ("丙", 2), ("乙", 2)]
    assert balance.plan(8, per_request=2, need=4, quota=3) == [("丙", 2), ("乙", 2)]
    # a small N spreads over every category: one task each when the quota is 1
    assert CategoryBalance(["甲", "乙", "丙"]).plan(8, per_request=5, need=3, quota=1) == [("甲", 1), ("乙", 1), ("丙", 1)]
    assert merge_categories(["营养建议", "病因分析"])[-1] == "营养建议"
    assert merge_categories(["营养建议"])[: len(DEFAULT_CATEGORIES)] == list(DEFAULT_CATEGORIES)
    assert merge_categories(["营养建议"], replace=True) == ["营养建议"]


class ScriptedRunner:
    """Stands in for the engine: answers requests with the fake model and records what was asked."""

    def __init__(self) -> None:
        self.asked: list = []

    def run(self, requests, desc=""):
        out = []
        for r in requests:
            self.asked.append(r)
            body = {"messages": r.messages}
            out.append(LLMResult(r.key, True, value=TaskBatch.model_validate_json(self_instruct_model(body))))
        return out


def _loop(tmp_path: Path, **kw) -> SelfInstructLoop:
    seeds = read_seeds([write_seeds(tmp_path / "seeds.json")]).seeds
    cfg = GenerationSettings(num=kw.pop("num", 24), per_request=3, round_size=4, categories=list(DEFAULT_CATEGORIES), **kw)
    return SelfInstructLoop(seeds, load_prompt("self_instruct"), cfg, model="fake")


def test_loop_reaches_n_balanced_rejects_near_copies_and_is_deterministic(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    result = _loop(tmp_path).run(runner)
    assert len(result.records) == 24
    assert result.counters["rejected.near_copy"] >= 1
    assert {r.reason for r in result.rejects} == {"near_copy"}
    assert max(result.categories.values()) - min(result.categories.values()) <= 3  # 24 over 8 categories
    near = next(r for r in result.rejects if r.reason == "near_copy")
    assert near.raw["nearest"].startswith("seed:") and near.raw["similarity"] >= 0.6
    # requests carry the recent accepted questions and the requested category
    later = runner.asked[-1].messages[-1]["content"]
    assert "已经生成的任务" in later and result.records[0].messages[0].content.split("，")[0] in "".join(
        r.messages[-1]["content"] for r in runner.asked[4:])
    again = ScriptedRunner()
    assert [r.id for r in _loop(tmp_path).run(again).records] == [r.id for r in result.records]
    assert [r.messages for r in again.asked] == [r.messages for r in runner.asked]


def test_multi_turn_dialogues_and_wrong_turn_counts(tmp_path: Path) -> None:
    result = _loop(tmp_path, num=6, turns=2).run(ScriptedRunner())
    assert len(result.records) == 6
    assert all([m.role for m in r.messages] == ["user", "assistant"] * 2 for r in result.records)
    assert all(json.loads(json.dumps(r.meta))["turns"] == 2 for r in result.records)


def test_small_n_covers_every_category(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    result = _loop(tmp_path, num=8).run(runner)
    assert len(result.records) == 8 and set(result.categories.values()) == {1}
    assert all("请编写 1 个" in r.messages[-1]["content"] for r in runner.asked)
    assert result.counters["tasks_beyond_asked"] == 0


def test_failed_requests_are_rejects_and_the_cap_stops_the_loop(tmp_path: Path) -> None:
    class Failing:
        def run(self, requests, desc=""):
            return [LLMResult(r.key, False, raw="not json", error="invalid_output", message="bad") for r in requests]

    result = _loop(tmp_path, num=10, max_requests=5).run(Failing())
    assert result.records == [] and result.requests == 5
    assert result.counters["rejected.invalid_output"] == 5 and result.counters["stopped_at_max_requests"] == 1
