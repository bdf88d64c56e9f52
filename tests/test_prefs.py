"""build-prefs units: input readers, pair selection (ties / None never pair), perturbations."""

from __future__ import annotations

import itertools
import random

import pytest

from medmill.builders.prefs.judging import (
    Candidate,
    NoPair,
    PairChoice,
    PairVerdict,
    RubricScores,
    Scored,
    both_orders_agree,
    confirm_reference,
    select_pair,
    unique_candidates,
)
from medmill.builders.prefs.perturb import Corrupter, facts_from_meta
from medmill.builders.readers.prompt_items import FieldNames, read_inputs
from medmill.schemas.errors import MedmillError
from medmill.schemas.records import normalise_for_compare
from tests.test_prefs_support import KG, kg_qa_dir, write_jsonl

# ---- inputs -------------------------------------------------------------------------------------


def test_reads_every_preference_format_and_rejects_bad_lines_with_line_numbers(tmp_path):
    f = write_jsonl(
        tmp_path / "prefs.json",
        [
            {"conversations": [{"from": "human", "value": "头痛怎么办？"}], "chosen": "建议休息并就医。", "rejected": "忍着。"},
            {"question": "发烧吃什么药？", "response_chosen": "可在医生指导下用对乙酰氨基酚。", "response_rejected": "随便吃。"},
            {"prompt": "咳嗽怎么办？", "chosen": "多喝水，持续不好请就医。", "rejected": "不用管。"},
            {"prompt": [{"role": "user", "content": "失眠怎么办？"}],
             "chosen": [{"role": "assistant", "content": "规律作息。"}], "rejected": [{"role": "assistant", "content": "喝酒助眠。"}]},
            '{"question": "broken',
            {"conversations": [{"from": "gpt", "value": "我先说"}], "chosen": "a", "rejected": "b"},
            {"question": "", "response_chosen": "x", "response_rejected": "y"},
            {"something": "else"},
        ],
    )
    result = read_inputs([f])
    assert [i.origin for i in result.items] == ["medicalgpt", "medicalgpt_legacy", "trl", "trl"]
    assert result.items[1].reference == "可在医生指导下用对乙酰氨基酚。"
    assert result.items[3].given_rejected == "喝酒助眠。"
    by_line = {r.source.line: r.reason for r in result.rejects}
    assert by_line == {5: "invalid_json", 6: "bad_turns", 7: "empty_field", 8: "unknown_format"}
    assert all(r.source.file == str(f) for r in result.rejects)


def test_prompt_files_jsonl_and_gbk_csv_with_named_columns(tmp_path):
    jsonl = write_jsonl(tmp_path / "q.jsonl", [{"问题": "胃痛怎么办？"}, {"instruction": "解释", "input": "高血压", "output": "血压升高。"}])
    csv_path = tmp_path / "q.csv"
    csv_path.write_bytes("科室,提问,回答\n内科,\"胸闷气短\n怎么办？\",建议就医。\n外科,,空问题\n".encode("gb18030"))
    result = read_inputs([jsonl])
    assert [i.prompt[0].content for i in result.items] == ["胃痛怎么办？", "解释\n高血压"]
    assert result.items[1].reference == "血压升高。" and result.items[0].reference is None
    result = read_inputs([csv_path], FieldNames(question="提问", answer="回答"))
    assert [i.prompt[0].content for i in result.items] == ["胸闷气短\n怎么办？"]
    assert result.items[0].reference == "建议就医。"
    assert [(r.reason, r.source.line) for r in result.rejects] == [("empty_field", 4)]
    with pytest.raises(MedmillError, match="no question column"):
        read_inputs([csv_path])
    listed = tmp_path / "list.json"
    listed.write_text('["头晕怎么办？", "", 3]', encoding="utf-8")
    result = read_inputs([listed])
    assert [i.prompt[0].content for i in result.items] == ["头晕怎么办？"]
    assert [r.reason for r in result.rejects] == ["empty_field", "unknown_format"]


def test_sft_dir_prompt_is_all_turns_but_the_last_and_keeps_groups(tmp_path):
    d = kg_qa_dir(tmp_path)
    result = read_inputs([d])
    assert len(result.items) == sum(len(r) for r in KG.values()) and not result.rejects
    item = result.items[0]
    assert item.prompt[-1].role == "user" and item.reference and item.source.group.startswith("entity:")
    assert item.meta["values"]


def test_real_medicalgpt_preference_samples_read_without_loss(samples_dir):
    for name, origin, n in [("medicalgpt_reward_medical_sample.jsonl", "medicalgpt_legacy", 50),
                            ("medicalgpt_dpo_zh_sample.jsonl", "medicalgpt", 20)]:
        result = read_inputs([samples_dir / name])
        assert len(result.items) == n and not result.rejects
        assert {i.origin for i in result.items} == {origin}
        assert all(i.reference and i.given_rejected for i in result.items)
    with_system = [i for i in read_inputs([samples_dir / "medicalgpt_dpo_zh_sample.jsonl"]).items if i.prompt[0].role == "system"]
    assert len(with_system) == 5


# ---- pair selection -----------------------------------------------------------------------------


def _scored(model: str, score: float | None, text: str | None = None) -> Scored:
    cand = Candidate(text or f"answer of {model}", model)
    if score is None:
        return Scored(cand, None, error="invalid_output")
    v = int(score)
    return Scored(cand, RubricScores(helpful=v, honest=v, harmless=v, accurate=v, safe=v, rationale="r"))


def test_ties_and_missing_scores_never_become_pairs():
    assert select_pair([_scored("a", 7), _scored("b", 7)], 1.0).reason == "tie"
    assert select_pair([_scored("a", 8), _scored("b", 8), _scored("c", 2)], 1.0).reason == "tie"
    assert select_pair([_scored("a", None), _scored("b", 4)], 1.0).reason == "missing_score"
    assert select_pair([_scored("a", 9), _scored("b", None), _scored("c", 2)], 1.0).reason == "missing_score"
    assert select_pair([_scored("a", 6), _scored("b", 5)], 2.0).reason == "low_margin"
    assert select_pair([_scored("a", 6)], 0.0).reason == "too_few_candidates"
    choice = select_pair([_scored("a", 5), _scored("b", 9), _scored("c", 2), _scored("d", 2)], 1.0)
    assert isinstance(choice, PairChoice)
    assert (choice.chosen.candidate.model, choice.rejected.candidate.model, choice.margin) == ("b", "c", 7.0)


def test_select_pair_over_all_small_score_patterns():
    """Every combination of 3 scores from {None, 3, 5, 8}: a pair only with a strict best and enough margin."""
    for scores in itertools.product([None, 3, 5, 8], repeat=3):
        group = [_scored(f"m{i}", s) for i, s in enumerate(scores)]
        result = select_pair(group, 2.0)
        if None in scores:
            assert isinstance(result, NoPair) and result.reason == "missing_score"
            continue
        best = max(scores)
        if scores.count(best) > 1 or best - min(scores) < 2.0:
            assert isinstance(result, NoPair)
            continue
        assert isinstance(result, PairChoice)
        assert result.chosen.overall == best and result.rejected.overall == min(scores)
        assert result.chosen.candidate.text != result.rejected.candidate.text


def test_confirm_reference_drops_pairs_the_judge_does_not_confirm():
    assert confirm_reference(_scored("reference", 5), _scored("m", 8), 1.0).reason == "judge_prefers_model"
    assert confirm_reference(_scored("reference", 6), _scored("m", 6), 0.0).reason == "tie"
    assert confirm_reference(_scored("reference", None), _scored("m", 6), 1.0).reason == "missing_score"
    assert isinstance(confirm_reference(_scored("reference", 9), _scored("m", 4), 1.0), PairChoice)


def test_side_by_side_check_needs_the_same_winner_in_both_orders():
    a, b, tie = PairVerdict(better="A"), PairVerdict(better="B"), PairVerdict(better="tie")
    assert both_orders_agree(a, b) is None
    assert both_orders_agree(a, a).reason == "position_inconsistent"
    assert both_orders_agree(b, b).reason == "position_inconsistent"
    assert both_orders_agree(b, a).reason == "pairwise_prefers_rejected"
    assert both_orders_agree(a, tie).reason == "pairwise_tie"
    assert both_orders_agree(None, b).reason == "missing_verdict"


def test_rubric_rejects_out_of_range_scores_and_duplicates_are_merged():
    with pytest.raises(ValueError):
        RubricScores(helpful=11, honest=5, harmless=5, accurate=5, safe=5)
    kept, dropped = unique_candidates([Candidate("多喝水。", "a"), Candidate(" 多喝水。 ", "b"), Candidate("休息。", "c")])
    assert [c.model for c in kept] == ["a", "c"] and dropped == 1


# ---- perturbations ------------------------------------------------------------------------------


def test_facts_from_meta_accepts_the_usual_shapes():
    assert facts_from_meta({"entity": "感冒", "relations": {"症状": ["鼻塞"]}})[0].values == ("鼻塞",)
    kg_qa = facts_from_meta({"entity": "咳嗽", "relations": ["症状"], "values": {"entities": ["感冒", "肺炎"], "检查": ["胸片"]}})
    assert [(f.relation, f.values, f.entity) for f in kg_qa] == [("entities", ("感冒", "肺炎"), "咳嗽"), ("检查", ("胸片",), "咳嗽")]
    f = facts_from_meta({"facts": [{"head": "胃炎", "relation": "检查", "tail": "胃镜"}]})[0]
    assert (f.entity, f.relation, f.values) == ("胃炎", "检查", ("胃镜",))
    assert facts_from_meta({"relation": "科室", "values": "内科"})[0].values == ("内科",)
    assert facts_from_meta({"score": 3}) == []


def test_fact_swap_uses_the_same_relation_of_another_entity(tmp_path):
    items = read_inputs([kg_qa_dir(tmp_path)]).items
    corrupter = Corrupter(items, ["fact_swap"], seed=1)
    all_values = {rel: {v for rels in KG.values() for v in rels[rel]} for rel in next(iter(KG.values()))}
    for item in items:
        result = corrupter.corrupt(item, item.reference)
        assert result is not None and result.name == "fact_swap"
        entity = item.meta["entity"]
        ((relation, swaps),) = result.detail["swapped"].items()
        for old, new in swaps.items():
            assert old in KG[entity][relation] and new in all_values[relation] and new not in KG[entity][relation]
            assert old not in result.text.replace(entity, "") and new in result.text
        assert entity in result.text  # a value inside the entity name (甲状腺功能) leaves the name alone


def test_each_perturbation_makes_a_known_change():
    from medmill.builders.readers.prompt_items import PromptItem
    from medmill.schemas import Message, Source

    answer = "您好，这可能是胃炎引起的。可以口服奥美拉唑，每次20mg，每日一次。建议尽快到医院消化内科就诊。"
    item = PromptItem(prompt=[Message(role="user", content="胃痛反酸怎么办？")], source=Source(), origin="test", reference=answer)
    c = Corrupter([item], seed=3)
    get = {name: fn(answer, [], random.Random(0)) for name, fn in c._fns.items()}
    assert get["fact_swap"] is None  # no KG meta
    assert "200mg" in get["dose_change"].text and "20mg" not in get["dose_change"].text
    for not_a_dose in ("车间空气中最高容许浓度为10mg/m3，口服无害。", "新生儿体重4000g。", "每次查血糖5mg/dL。"):
        assert c.dose_change(not_a_dose, [], random.Random(0)) is None
    weight_based = c.dose_change("儿童每次20mg/kg口服。", [], random.Random(0))
    assert weight_based.text == "儿童每次200mg/kg口服。"
    unsafe = get["unsafe_advice"]
    assert unsafe.detail["replaced"] == "建议尽快到医院消化内科就诊。" and "就诊。" not in unsafe.text
    assert unsafe.detail["inserted"] in unsafe.text
    sure = get["overconfident"]
    assert "肯定是胃炎" in sure.text and sure.detail["inserted"] in sure.text
    short = get["truncate"]
    assert len(short.text) <= 0.4 * len(answer) and answer.startswith(short.text)


def test_corrupt_balances_perturbations_and_never_returns_the_same_text(samples_dir):
    items = read_inputs([samples_dir / "medicalgpt_medical_sft_sample.jsonl"]).items
    c = Corrupter(items, seed=7)
    names = []
    for item in items:
        result = c.corrupt(item, item.reference)
        if result is None:
            continue
        assert normalise_for_compare(result.text) != normalise_for_compare(item.reference)
        names.append(result.name)
    assert len(names) >= 45
    counts = {n: names.count(n) for n in set(names)}
    assert {"truncate", "unsafe_advice", "overconfident"} <= set(counts)
    assert max(counts[n] for n in ("truncate", "unsafe_advice", "overconfident")) - min(
        counts[n] for n in ("truncate", "unsafe_advice", "overconfident")) <= 2
