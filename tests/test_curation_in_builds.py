"""Curation inside builds: what preference pairs are judged on, and the dedup index only growing
after a dataset is safely written."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmill.builders.core.build import finish_build
from medmill.builders.core.writer import BuildInfo
from medmill.builders.curation.stages import CurationSettings, curation_steps
from medmill.schemas import Message, PreferenceRecord, SFTRecord, Source
from medmill.schemas.errors import MedmillError


def pair(chosen: str, rejected: str, prompt: str = "高血压患者能自己停药吗？") -> PreferenceRecord:
    p = [Message(role="user", content=prompt)]
    c = [Message(role="assistant", content=chosen)]
    r = [Message(role="assistant", content=rejected)]
    return PreferenceRecord(id=PreferenceRecord.make_id(p, c, r), prompt=p, chosen=c, rejected=r, source=Source(builder="t"))


def run_steps(records, kind="preference", **kw):
    result = []
    for step in curation_steps(kind, CurationSettings(**kw)):
        out = step(records)
        records = out.records
        result.append((step.name, out))
    return records, result


def test_deliberately_bad_rejected_side_keeps_the_pair():
    good = "不能自行停药。血压控制平稳后是否减药需要由医生评估，擅自停药可能导致血压反弹，请定期复诊。"
    # truncated and unsafe on purpose, as build-prefs --strategy corrupt makes it
    bad = "可以。"
    kept, _ = run_steps([pair(good, bad)], dedup=False)
    assert len(kept) == 1


def test_unsafe_chosen_side_still_judged():
    from medmill.builders.curation.safety import default_lexicon

    lex = default_lexicon()
    term = next(t for c in lex.categories.values() if c.action == "drop" for t in sorted(c.terms))
    kept, steps = run_steps([pair(f"请参考这个方法：{term}，然后再观察症状变化情况。", "不知道。")], dedup=False)
    assert kept == []
    assert any(out.rejects and out.rejects[0].stage == "safety" for _n, out in steps)


TOPICS = [
    ("糖尿病患者饮食要注意什么？", "控制总热量，少吃精制糖和含糖饮料，定时定量进餐，并按时监测血糖。"),
    ("儿童发烧超过三天怎么办？", "持续发热超过三天应带孩子到儿科就诊，查明感染原因，期间注意补充水分。"),
    ("胃食管反流平时怎么调理？", "睡前三小时不进食，抬高床头，少喝咖啡和浓茶，戒烟限酒，控制体重。"),
    ("痛风急性发作能喝啤酒吗？", "不能。啤酒会升高血尿酸，加重发作；急性期应多饮水并在医生指导下用药。"),
    ("偏头痛发作时有什么缓解办法？", "在安静避光的房间休息，可冷敷额头；频繁发作应就医评估是否需要预防用药。"),
]


def _sft(i: int) -> SFTRecord:
    q, a = TOPICS[i]
    m = [Message(role="user", content=q), Message(role="assistant", content=a)]
    return SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"g{i}"))


def test_failed_write_does_not_grow_the_dedup_index(tmp_path: Path, monkeypatch):
    import medmill.builders.core.build as build

    index = tmp_path / "index"
    settings = CurationSettings(dedup_index=index)
    records = [_sft(i) for i in range(5)]

    def broken_write(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(build, "write_dataset_dir", broken_write)
    with pytest.raises(OSError):
        finish_build(tmp_path / "out", records, [], BuildInfo(kind="sft", builder="t", command="x"), curation_steps("sft", settings))
    monkeypatch.undo()
    # the re-run keeps every record: nothing of the failed run is in the index
    m = finish_build(tmp_path / "out", records, [], BuildInfo(kind="sft", builder="t", command="x"), curation_steps("sft", settings))
    assert m.records_total == 5
    # and a later build of the same records is now deduplicated against the published ones
    with pytest.raises(MedmillError, match="no records survived.*dedup/"):
        finish_build(tmp_path / "out2", records, [], BuildInfo(kind="sft", builder="t", command="x"), curation_steps("sft", settings))
    assert (tmp_path / "out2" / "rejects.jsonl").read_text(encoding="utf-8").count("\n") == 5


def test_build_manifest_keeps_duplicate_clusters_for_the_report(tmp_path: Path):
    from medmill.builders.publish.report import render_report

    twin = "高血压患者不能自己停药，血压控制稳定后也应在医生指导下逐步调整用药方案，并定期复查血压。"
    records = [_sft(i) for i in range(3)]
    for j, tail in enumerate(("", "。", "！")):
        m = [Message(role="user", content="高血压能停药吗？"), Message(role="assistant", content=twin + tail)]
        records.append(SFTRecord(id=SFTRecord.make_id(m), messages=m, source=Source(builder="t", group=f"t{j}")))
    m = finish_build(tmp_path / "out", records, [], BuildInfo(kind="sft", builder="t", command="x"), curation_steps("sft"))
    dedup = m.curation["dedup"]
    assert dedup["clusters"] == 1 and len(dedup["cluster_examples"]) == 1
    assert len(dedup["cluster_examples"][0]["members"]) == 2
    html = render_report([tmp_path / "out"])  # once "No duplicate clusters recorded" for every build
    assert "1 cluster(s)" in html and "定期复查血压" in html
