"""medmill eval's data side and metrics, no model: exam file shapes, parsing generated letters,
ROUGE-L / BLEU on Chinese, grounding, public sft files and split selection."""

from __future__ import annotations

import json

import pytest


def test_mcq_public_file_shapes(tmp_path, samples_dir):
    from medmill.evaluation.mcq_data import load_mcq

    cmexam = tmp_path / "cmexam.csv"
    cmexam.write_text(
        "Question,Options,Answer,Explanation,Clinical Department\n"
        '高血压首选哪类药？,"A 利尿剂\nB 抗生素\nC 激素\nD 维生素",A,解释,心内科\n'
        '下列哪些是糖尿病症状？,"A 多饮\nB 多尿\nC 脱发\nD 多食",ABD,解释,内分泌科\n'
        '坏行,"A 只有一个",Z,,\n',
        encoding="utf-8",
    )
    items, problems, _ = load_mcq(cmexam, {})
    assert [(i.answer, i.multi, i.category, len(i.options)) for i in items] == [("A", False, "心内科", 4), ("ABD", True, "内分泌科", 4)]
    assert problems.count == 1 and "cmexam.csv:10:" in problems.examples[0]  # the bad row's first physical line

    medqa = tmp_path / "medqa.jsonl"
    rows = [
        {"question": "发热首选？", "options": {"A": "布洛芬", "B": "青霉素", "C": "地塞米松", "D": "维C", "E": "钙片"}, "answer": "布洛芬", "answer_idx": "A", "meta_info": "第一部分"},
        {"question": "咳嗽？", "options": {"A": "止咳", "B": "补钙"}, "answer": "补钙", "meta_info": "第二部分"},
    ]
    medqa.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n", encoding="utf-8")
    items, problems, _ = load_mcq(medqa, {})
    assert [(i.answer, i.category) for i in items] == [("A", "第一部分"), ("B", "第二部分")]  # answer text -> letter
    assert problems.count == 1

    cmb = tmp_path / "cmb.json"
    cmb.write_text(json.dumps([{"exam_type": "医师考试", "exam_subject": "内科", "question": "哪些属于降压药？",
                                "answer": "AC", "question_type": "多项选择题", "option": {"A": "氨氯地平", "B": "阿莫西林", "C": "缬沙坦", "D": "胰岛素"}}],
                              ensure_ascii=False), encoding="utf-8")  # fmt: skip
    (item,), _, _ = load_mcq(cmb, {})
    assert item.answer == "AC" and item.multi and item.category == "内科" and "多项" in item.prompt

    mapped = tmp_path / "custom.csv"
    mapped.write_text("题目,选项,正确,科室\n哪个是抗生素？,A.布洛芬\nB.阿莫西林,B,感染科\n".replace("A.布洛芬\nB.阿莫西林", '"A.布洛芬\nB.阿莫西林"'), encoding="utf-8")
    (item,), _, _ = load_mcq(mapped, {"question": "题目", "options": "选项", "answer": "正确", "category": "科室"})
    assert item.options == {"A": "布洛芬", "B": "阿莫西林"} and item.answer == "B" and item.category == "感染科"

    tcm, problems, _ = load_mcq(samples_dir / "tcmchat_choice_herb_sample.csv", {})
    assert len(tcm) + problems.count == 50 and len(tcm) >= 45
    assert all(len(i.options) == 5 and len(i.answer) == 1 for i in tcm)


def test_parse_generated_letters():
    from medmill.evaluation.mcq import parse_letters
    from medmill.evaluation.mcq_data import MCQItem

    single = MCQItem("k", "o", "q", {"A": "x", "B": "y", "C": "z"}, "B")
    multi = MCQItem("k", "o", "q", {"A": "x", "B": "y", "C": "z", "D": "w"}, "AC", multi=True)
    assert parse_letters("答案：B", single) == "B"
    assert parse_letters("B. y，因为……", single) == "B"
    assert parse_letters("我认为是C", single) == "C"
    assert parse_letters("不知道", single) == ""
    assert parse_letters("A、C", multi) == "AC"
    assert parse_letters("CA", multi) == "AC"
    assert parse_letters("正确答案为 A,C,D", multi) == "ACD"


def test_rouge_l_on_chinese():
    from medmill.evaluation.metrics import corpus_bleu, rouge_l

    text = "高血压患者应低盐饮食，规律服用降压药物。"
    assert rouge_l(text, text) == 1.0
    assert rouge_l(text, "今天天气很好") == 0.0
    assert 0 < rouge_l("高血压患者应低盐饮食", text) < 1
    assert corpus_bleu([text], [text]) == pytest.approx(100.0)
    assert corpus_bleu(["今天天气很好"], [text]) == 0.0


def test_grounding_counts_stated_kg_values_and_references():
    from medmill.evaluation.generation import GenItem, score_generation

    kg = {"values": {"症状": ["发热", "头痛"]}}
    book = {"reference": ["高血压患者应低盐饮食，每日食盐不超过5克。"]}
    items = [GenItem(str(i), "o", [{"role": "user", "content": "q"}], "ref", meta) for i, meta in enumerate([kg, kg, book, book, {}])]
    outputs = ["常见发热和头痛。", "只有发热。", "应低盐饮食，每日食盐不超过5克。", "多喝水。", "无关"]
    summary, details = score_generation(items, [{"key": str(i), "output": o} for i, o in enumerate(outputs)], 0.6)
    assert [d.get("grounding_recall") for d in details] == [1.0, 0.5, 1.0, 0.0, None]
    assert summary["grounding_items"] == 4 and summary["grounding_rate"] == 0.5
    assert summary["grounding_rate_kg"] == 0.5 and summary["grounding_rate_reference"] == 0.5


def test_files_and_splits_for_generation(tmp_path):
    from medmill.evaluation.generation import gen_items
    from medmill.evaluation.sources import load_records
    from medmill.schemas.errors import MedmillError

    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "头痛怎么办", "input": "", "output": "多休息。"}, {"instruction": "缺答案"},
                                  {"instruction": "发热", "output": "退热。", "meta": {"values": {"药物": ["布洛芬"]}}}],
                                 ensure_ascii=False), encoding="utf-8")  # fmt: skip
    records, problems, _ = load_records(alpaca, "sft")
    items = gen_items(records, problems)
    assert [i.reference for i in items] == ["多休息。", "退热。"] and items[1].meta["values"] == {"药物": ["布洛芬"]}
    assert problems.count == 1 and "alpaca.json:2" in problems.examples[0]
    train_only = tmp_path / "train_only"
    from medmill.builders.core.writer import BuildInfo, write_dataset_dir
    from tests.evaluation.eval_support import mcq_records

    write_dataset_dir(train_only, mcq_records(4), [], BuildInfo(kind="sft", builder="t", command="t"))
    with pytest.raises(MedmillError, match="no held-out split"):
        load_records(train_only, "sft")
    records, _, read = load_records(train_only, "sft", split="train", limit=2)
    assert len(records) == 2 and "train split" in read


def test_item_cache_drops_a_cut_tail_and_appends_cleanly(tmp_path):
    from medmill.evaluation.cache import ItemCache

    path = tmp_path / "c.jsonl"
    ItemCache(path).add([{"key": "a", "v": 1}, {"key": "b", "v": 2}])
    path.write_text(path.read_text(encoding="utf-8") + '{"key": "c", "v"', encoding="utf-8")  # killed mid-line
    cache = ItemCache(path)
    assert set(cache.done) == {"a", "b"} and "c" not in cache
    cache.add([{"key": "c", "v": 3}])
    assert [r["v"] for r in ItemCache(path).rows(["a", "b", "c"])] == [1, 2, 3]


def test_rm_summary_counts_ties_apart_and_splits_by_perturbation():
    from medmill.evaluation.rm import summarize_rm

    rows = [
        {"key": "1", "chosen": 2.0, "rejected": 1.0, "perturbation": "truncate"},
        {"key": "2", "chosen": 1.0, "rejected": 1.0, "perturbation": "truncate"},
        {"key": "3", "chosen": 0.0, "rejected": 3.0, "perturbation": "dose_change"},
        {"key": "4", "chosen": 5.0, "rejected": 1.0, "perturbation": "dose_change"},
    ]
    s = summarize_rm(rows)
    assert (s["pairs"], s["accuracy"], s["ties"]) == (4, 0.5, 1)
    assert s["by_perturbation"] == {"dose_change": {"pairs": 2, "accuracy": 0.5}, "truncate": {"pairs": 2, "accuracy": 0.5}}
    assert s["mean_margin"] == pytest.approx((1 + 0 - 3 + 4) / 4)


def test_mcq_summary_by_category_and_kind():
    from medmill.evaluation.mcq import summarize

    rows = [
        {"key": "1", "answer": "A", "pred": "A", "correct": True, "category": "症状", "multi": False, "pred_sum": "A", "pred_norm": "A"},
        {"key": "2", "answer": "AC", "pred": "A", "correct": False, "category": "症状", "multi": True, "pred_sum": "AC", "pred_norm": "A"},
        {"key": "3", "answer": "B", "pred": "B", "correct": True, "category": "", "multi": False, "pred_sum": "C", "pred_norm": "B"},
    ]
    s = summarize(rows)
    assert s["accuracy"] == pytest.approx(2 / 3) and s["accuracy_sum"] == pytest.approx(2 / 3) and s["accuracy_norm"] == pytest.approx(2 / 3)
    assert (s["accuracy_single"], s["accuracy_multi"]) == (1.0, 0.0)
    assert s["by_category"] == {"(none)": {"items": 1, "accuracy": 1.0}, "症状": {"items": 2, "accuracy": 0.5}}


def test_ppl_reads_a_plain_folder_of_text_files(tmp_path):
    """--general wiki_dir/: a folder of .txt/.md documents (not a dataset dir) is read line by line;
    commas in prose are punctuation, not CSV columns."""
    from medmill.evaluation.sources import is_dir_source, load_records
    from medmill.schemas.errors import MedmillError

    folder = tmp_path / "general"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Fever, cough, and fatigue are common.\n\n第二行文字。\n", encoding="utf-8")
    (folder / "sub" / "b.md").write_text("# 标题\n高血压的治疗，包括生活方式干预。\n", encoding="gb18030")
    (folder / ".hidden.txt").write_text("never read\n", encoding="utf-8")
    assert is_dir_source(folder, allow_text_folder=True) is False
    records, _problems, _described = load_records(folder, "pretrain")
    texts = sorted(r.row["text"] for r in records)
    assert texts == sorted(["Fever, cough, and fatigue are common.", "第二行文字。", "# 标题", "高血压的治疗，包括生活方式干预。"])
    with pytest.raises(MedmillError):
        is_dir_source(folder)  # other tasks still want a dataset dir
