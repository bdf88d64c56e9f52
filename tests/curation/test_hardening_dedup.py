"""Issue 12 #26: the dedup default removes light-edit copies and keeps records that state other facts
(entity names, KG values, drug names, numbers with units), however alike their templates are."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from medmill.builders.curation.dedup import DedupConfig, find_duplicates
from medmill.builders.curation.fact_guard import FactGuard
from medmill.builders.curation.record_dedup import dedup_records
from medmill.builders.curation.settings import CurationSettings
from medmill.builders.kg_qa.template_qa import build_template_records, protected_terms
from medmill.builders.kg_qa.templates import load_templates
from medmill.builders.readers.kg import read_kg
from medmill.cli import _register, app
from medmill.schemas.errors import MedmillError
from medmill.schemas.sources import KGEntity
from tests.curation.test_curation_cli import make_dir, rows, sft

_register()
EDIT_CHARS = "的了是在有和就不人都一上也很到说要去你会着没看好自己这患者治疗症状医院检查药物疾病"


def qa(question: str, answer: str) -> str:
    return f"{question}\n{answer}"


# pairs a Jaccard of >= 0.8 (the old default) merged, though they state different facts
DIFFERENT_FACTS = [
    (qa("1型糖尿病的常用药物有哪些？", "治疗1型糖尿病的常用药物有胰岛素和二甲双胍，请在医生或药师指导下使用。"),
     qa("2型糖尿病的常用药物有哪些？", "治疗2型糖尿病的常用药物有胰岛素和二甲双胍，请在医生或药师指导下使用。")),
    (qa("甲型肝炎需要做哪些检查？", "怀疑甲型肝炎时，可做的检查有肝功能、血常规和腹部超声，具体项目由医生根据病情决定。"),
     qa("乙型肝炎需要做哪些检查？", "怀疑乙型肝炎时，可做的检查有肝功能、血常规和腹部超声，具体项目由医生根据病情决定。")),
    (qa("阿莫西林一次吃多少？", "成人常用量为一次0.5g，每8小时一次，疗程遵医嘱，肾功能不全者需减量，过敏者禁用。"),
     qa("阿莫西林一次吃多少？", "成人常用量为一次1.0g，每8小时一次，疗程遵医嘱，肾功能不全者需减量，过敏者禁用。")),
    (qa("高血压患者可以吃什么药？", "常用的降压药有硝苯地平，一般一天一次，请在医生指导下长期规律服用，不要自行停药。"),
     qa("高血压患者可以吃什么药？", "常用的降压药有氨氯地平，一般一天一次，请在医生指导下长期规律服用，不要自行停药。")),
]


@pytest.mark.parametrize("a, b", DIFFERENT_FACTS)
def test_alike_records_stating_other_facts_are_both_kept(a, b):
    result = find_duplicates([a, b], DedupConfig())
    assert result.keep.tolist() == [True, True]
    assert result.stats["fact_guarded_pairs"] == 1
    # the same pair without the guard is a near-duplicate: the guard is what keeps it
    assert find_duplicates([a, b], DedupConfig(fact_guard=False)).keep.tolist() == [True, False]


def test_guard_names_the_differing_fact_and_forgives_edits():
    guard = FactGuard({"慢性胃炎", "胃炎", "张氏综合征", "李氏综合征"})
    assert guard.difference("呕吐可能是哪些疾病引起的？", "恶心可能是哪些疾病引起的？") == "呕吐 ≠ 恶心"
    assert guard.difference("张氏综合征怎么治", "李氏综合征怎么治") == "张氏综合征 ≠ 李氏综合征"
    assert guard.difference("可考虑普通感冒、急性支气管炎和肺结核", "可考虑普通感冒和肺结核") == "急性支气管炎 only in one text"
    assert guard.difference("慢性胃炎怎么办", "胃炎怎么办") is not None  # another entity
    assert guard.difference("Ⅱ型脑囊肿", "Ⅰ型脑囊肿") is not None
    assert guard.difference("每次5mg", "每次10mg") == "5mg ≠ 10mg"
    assert guard.difference("发热3天", "发热5天") == "3天 ≠ 5天"
    assert guard.difference("问题3：平时应注意什么？", "问题4：平时应注意什么？") is None  # a bare number is no fact
    # what an edited copy looks like: a character lost or swapped inside a term, text moved
    assert guard.difference("慢性胃炎怎么办", "慢x胃炎怎么办") is None
    assert guard.difference("患者有糖尿病史，最近头痛", "患者有糖x病史，最近头痛") is None
    assert guard.difference("我发热三天了，咳嗽。", "咳嗽。我发热三天了，") is None
    assert guard.difference("血压150/90，心率80", "血压150/90，心x率80") is None


@pytest.mark.slow  # builds the whole example KG; the same guard on a small KG: test_kg_of_numbered_disease_names_loses_no_record
def test_example_kg_build_loses_no_record_and_counts_guarded_pairs(tmp_path, examples_dir):
    out = tmp_path / "kg"
    result = CliRunner().invoke(app, ["build-kg-qa", str(examples_dir / "kg"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    dedup = manifest["curation"]["dedup"]
    assert dedup["removed_near"] == 0 and dedup["out"] == dedup["in"]
    assert dedup["threshold"] == 0.6 and dedup["fact_guarded_pairs"] >= 5
    differences = {e["difference"] for e in dedup["fact_guarded_examples"]}
    assert {"恶心 ≠ 呕吐", "呕吐 ≠ 恶心"} & differences
    assert "| dedup | fact_guarded_pairs |" in (out / "README.md").read_text(encoding="utf-8")
    assert "kept as different facts" in result.output


def numbered_kg(families: int) -> list[KGEntity]:
    """Diseases whose names differ only by a number or a series prefix, with the same values."""
    organs = ["肝", "肾", "肺", "胃", "心", "脑", "骨", "皮肤", "甲状腺", "胰腺"]
    prefixes = [["1型", "2型", "3型"], ["甲型", "乙型", "丙型"], ["Ⅰ型", "Ⅱ型", "Ⅲ型"]]
    entities = []
    for f in range(families):
        base = organs[f % len(organs)] + ("炎" if f < len(organs) else "病")
        rel = {"症状": ["发热", "乏力", "恶心"], "检查": ["血常规", "肝功能"], "常用药物": ["泼尼松", "布洛芬"], "就诊科室": ["内科"]}
        for p in prefixes[f % 3]:
            entities.append(KGEntity(name=f"{p}{base}", type="疾病", relations=rel,
                                     attributes={"简介": f"{p}{base}是{base}的一种亚型。"}))
    return entities


def test_kg_of_numbered_disease_names_loses_no_record():
    entities = numbered_kg(20)
    records = build_template_records(entities, load_templates(None)).records
    config = DedupConfig(protected_terms=protected_terms(entities))
    out = dedup_records(records, ["user", "answer"], config, lambda r: "kg")
    assert len(out.kept) == len(records)
    assert out.stats["fact_guarded_pairs"] > 0
    # `medmill dedup` of the built dir has no protected terms from the build: the records' meta has them
    out_dir = dedup_records(records, ["user", "answer"], DedupConfig(), lambda r: "kg")
    assert len(out_dir.kept) == len(records)
    old = dedup_records(records, ["user", "answer"], DedupConfig(threshold=0.8, fact_guard=False), lambda r: "kg")
    assert len(old.kept) < len(records)  # what the old default did


def _edit(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, round(len(chars) * rate))):
        op, i = rng.random(), rng.randrange(len(chars))
        if op < 0.4:
            chars[i] = rng.choice(EDIT_CHARS)
        elif op < 0.7:
            chars.insert(i, rng.choice(EDIT_CHARS))
        else:
            del chars[i]
    return "".join(chars)


def test_light_edit_copies_are_found(examples_dir):
    """Each example-KG entity written out (~120-260 chars) and a copy with 1-5 % of characters edited."""
    entities = read_kg([examples_dir / "kg"]).entities
    bases = []
    for e in entities:
        text = "".join(e.attributes.values()) + "；".join(f"{k}：{'、'.join(v)}" for k, v in e.relations.items())
        if len(text) >= 120:
            bases.append(text[:260])
    assert len(bases) >= 40
    rng = random.Random(12)
    docs, family = [], []
    for k, b in enumerate(bases):
        docs += [b, _edit(b, rng.uniform(0.01, 0.05), rng)]
        family += [k, k]
    result = find_duplicates(docs, DedupConfig())
    pairs = [(i, i + 1) for i in range(0, len(docs), 2)]
    recall = sum(not (result.keep[i] and result.keep[j]) for i, j in pairs) / len(pairs)
    removed = [i for i in range(len(docs)) if not result.keep[i]]
    precision = sum(family[int(result.dup_of[i])] == family[i] for i in removed) / len(removed)
    assert recall >= 0.98, recall
    assert precision >= 0.99, precision


def test_dedup_cli_protect_file_and_no_guard(tmp_path):
    answer = "该病一般到内科就诊，常做的检查有血常规、肝功能和腹部超声，具体检查项目由接诊医生决定，请遵医嘱。"
    records = [sft(f"得了{name}应该挂哪个科？", answer.replace("该病", name), name) for name in ("王氏病", "赵氏病")]
    src = make_dir(tmp_path / "in", records)
    terms = tmp_path / "terms.txt"
    terms.write_text("# names\n王氏病 赵氏病\n", encoding="utf-8")
    runner = CliRunner()
    plain = runner.invoke(app, ["dedup", str(src), "--out", str(tmp_path / "a")])
    assert plain.exit_code == 0, plain.output
    assert len(rows(tmp_path / "a")) == 1  # names unknown to the guard: merged
    guarded = runner.invoke(app, ["dedup", str(src), "--out", str(tmp_path / "b"), "--protect", str(terms)])
    assert guarded.exit_code == 0, guarded.output
    assert len(rows(tmp_path / "b")) == 2
    missing = runner.invoke(app, ["dedup", str(src), "--out", str(tmp_path / "c"), "--protect", str(tmp_path / "nope.txt")])
    assert isinstance(missing.exception, MedmillError) and "nope.txt" in str(missing.exception)


def test_settings_default_is_the_new_threshold():
    assert CurationSettings().dedup_threshold == DedupConfig().threshold == 0.6
    assert CurationSettings().dedup_fact_guard is True


def test_fact_guard_normalise_equals_nfkc_lower():
    """The full-width table is a shortcut of NFKC, never a different answer: also where a combining
    mark follows a full-width letter, or other compatibility characters (㎎, ①, ﬁ) stand beside it."""
    import random
    import unicodedata

    from medmill.builders.curation.fact_guard import normalise

    rng = random.Random(7)
    alphabet = ["，", "。", "（", "）", "：", "Ａ", "ｂ", "５", "　", "\u0301", "\u0308", "㎎", "①", "ﬁ", "Ⅱ", "高", "血", "压",
                "a", "1", " ", "ｍｇ", "é", "e\u0301", "ｶ", "ﾞ"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    texts += ["Ａ\u0301", "ｶﾞ", "５ｍｇ，每日两次。", "口服阿司匹林"]
    for t in texts:
        assert normalise(t) == unicodedata.normalize("NFKC", t).lower(), repr(t)
