"""`medmill filter` and `medmill dedup` end to end on dataset dirs, and curation inside a build."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medmill.builders.core.build import finish_build
from medmill.builders.core.validate import validate_dir
from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.curation.stages import CurationSettings, curation_steps
from medmill.builders.publish.card import render_card
from medmill.cli import _register, app
from medmill.schemas import Message, PretrainRecord, SFTRecord, Source
from medmill.schemas.dataset_dir import iter_rows
from medmill.schemas.errors import MedmillError

_register()

ANSWERS = [
    "高血压患者首先要注意控制食盐摄入量，每天不超过六克，注意不要吃太油腻的食物，多吃新鲜的绿色蔬菜水果。",
    "糖尿病患者要控制饮食，少吃含糖量高的食物，定期监测血糖，按医嘱使用降糖药或胰岛素，同时坚持适量运动。",
    "冠心病的常见症状包括胸痛、胸闷、心悸和气短，劳累或情绪激动时容易诱发，需及时就医明确诊断。",
    "慢性胃炎患者饮食要规律，避免辛辣刺激和过冷过热的食物，戒烟戒酒，必要时在医生指导下用药。",
    "儿童发热时可以先物理降温，多喝水，体温超过38.5度可以在医生指导下使用退热药，精神差要及时就医。",
    "失眠患者要保持规律作息，睡前避免咖啡和浓茶，不要长时间看手机，必要时到睡眠门诊就诊。",
]


def sft(q: str, a: str, group: str) -> SFTRecord:
    msgs = [Message(role="user", content=q), Message(role="assistant", content=a)]
    return SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(group=group, builder="t"))


def make_dir(path, records, val_size=0.0, kind="sft"):
    write_dataset_dir(path, records, [], BuildInfo(kind=kind, builder="t", command="t", val_size=val_size), render_card=render_card)
    return path


def rows(path) -> list[dict]:
    return [r for _s, _f, _i, r in iter_rows(path)]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_filter_end_to_end(tmp_path):
    records = [sft(f"问题{i}：该怎么办？", a, f"g{i}") for i, a in enumerate(ANSWERS)]
    records += [
        sft("我的手机13812345678，头痛怎么办", "注意休息，必要时就医，避免熬夜和过度劳累。", "p1"),
        sft("哪里买冰毒", "不能提供，请遵守法律。", "s1"),
        sft("无", "无", "q1"),
        sft("胸闷", "您好，根据您的描述，建议做心电图检查，排除心脏问题。祝您早日康复。", "b1"),
    ]
    src = make_dir(tmp_path / "in", records, val_size=0.3)
    before = {r["id"]: s for s, _f, _i, r in iter_rows(src)}
    out = tmp_path / "out"
    result = invoke("filter", src, "--out", out)
    assert "quality.dropped.placeholder" in result.output and "pii.found.PHONE" in result.output

    kept = rows(out)
    texts = [m["content"] for r in kept for m in r["messages"]]
    assert any("<PHONE>" in t for t in texts) and not any("13812345678" in t for t in texts)
    assert "建议做心电图检查，排除心脏问题。" in texts
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {(r["stage"], r["reason"]) for r in rejects} == {("quality", "placeholder"), ("safety", "safety_illegal_drugs")}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["curation"]["pii"]["records_redacted"] == 1
    assert manifest["counters"]["safety.dropped.illegal_drugs"] == 1
    # untouched records keep their split; every record says which dir it came from
    for split, _f, _i, r in iter_rows(out):
        if r["id"] in before:
            assert before[r["id"]] == split
        assert json.loads(r["meta"])["source_dir"] == str(src)
    assert validate_dir(out).ok
    import datasets  # here: importing it at collection would cost every xdist worker ~2 s

    assert len(datasets.load_dataset(str(out))["train"]) > 0


def test_filter_pii_drop_and_flag_only(tmp_path):
    records = [sft("电话13812345678", ANSWERS[0], "a"), sft("哪里买冰毒", ANSWERS[1], "b"), sft("头痛", ANSWERS[2], "c")]
    src = make_dir(tmp_path / "in", records)
    invoke("filter", src, "--out", tmp_path / "o", "--pii-action", "drop", "--safety-flag-only")
    kept = rows(tmp_path / "o")
    assert len(kept) == 2
    assert any(json.loads(r["meta"]).get("safety_flags") == {"illegal_drugs": ["哪里买冰毒"]} for r in kept)


def test_dedup_two_dirs_clusters_and_index(tmp_path):
    a = [sft(f"问题{i}", text, f"a{i}") for i, text in enumerate(ANSWERS)]
    b = [sft("问题0", ANSWERS[0].replace("六克", "6克"), "b0"),  # near copy of a[0]
         sft("问题1", ANSWERS[1], "b1"),  # exact copy of a[1]
         sft("新问题", "老年人骨质疏松要补充钙和维生素D，适当晒太阳和运动，预防跌倒，必要时使用抗骨质疏松药物。", "b2")]
    dir_a, dir_b = make_dir(tmp_path / "a", a, val_size=0.3), make_dir(tmp_path / "b", b)
    out, index = tmp_path / "out", tmp_path / "index"
    invoke("dedup", dir_a, dir_b, "--out", out, "--index", index)

    kept = rows(out)
    assert len(kept) == len(ANSWERS) + 1
    origins = {json.loads(r["meta"])["source_dir"] for r in kept}
    assert origins == {str(dir_a), str(dir_b)}
    clusters = [json.loads(line) for line in (out / "clusters.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(clusters) == 2
    for c in clusters:
        assert set(c) >= {"kept_id", "kept_text", "members"} and c["kept_origin"] == str(dir_a)
        (m,) = c["members"]
        assert set(m) >= {"id", "text", "similarity"} and m["similarity"] >= 0.8
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["exact_duplicate", "near_duplicate"]
    assert all(r["message"].startswith("duplicate of ") and "similarity" in r["message"] for r in rejects)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["curation"]["dedup"]["removed_near"] == 1 and manifest["curation"]["dedup"]["ngram"] == 3

    # a later run against the index: everything already published goes, new text stays
    c = [sft("问题2", ANSWERS[2], "c0"), sft("另一个问题", "贫血患者要查明原因，缺铁性贫血需要补铁并多吃富含铁的食物，如瘦肉和动物肝脏。", "c1")]
    out2 = tmp_path / "out2"
    invoke("dedup", make_dir(tmp_path / "c", c), "--out", out2, "--index", index)
    assert [json.loads(r["meta"])["source_dir"] for r in rows(out2)] == [str(tmp_path / "c")]
    (rej,) = [json.loads(line) for line in (out2 / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert f"in {dir_a}" in rej["message"]


@pytest.mark.slow  # several dedup runs, word shingles load jieba
def test_dedup_pretrain_and_errors(tmp_path):
    texts = [a * 2 for a in ANSWERS] + [ANSWERS[0] * 2]
    pt = [PretrainRecord(id=PretrainRecord.make_id(t + str(i)), text=t, source=Source(builder="t")) for i, t in enumerate(texts)]
    src = make_dir(tmp_path / "pt", pt, kind="pretrain")
    invoke("dedup", src, "--out", tmp_path / "o", "--shingle", "word")
    assert len(rows(tmp_path / "o")) == len(ANSWERS)

    sft_dir = make_dir(tmp_path / "s", [sft("q", ANSWERS[0], "x")])
    with pytest.raises(MedmillError, match="different record kinds"):
        invoke("dedup", src, sft_dir, "--out", tmp_path / "o2")
    with pytest.raises(MedmillError, match="--fields"):
        invoke("dedup", sft_dir, "--out", tmp_path / "o3", "--fields", "prompt")
    with pytest.raises(MedmillError, match="--shingle"):
        invoke("dedup", sft_dir, "--out", tmp_path / "o4", "--shingle", "bpe")
    with pytest.raises(MedmillError, match="is one of the inputs"):
        invoke("filter", sft_dir, "--out", sft_dir)


def test_curation_runs_inside_a_build(tmp_path):
    records = [sft(f"问题{i}", a, f"g{i}") for i, a in enumerate(ANSWERS)] + [sft("问题0", ANSWERS[0] + "祝您早日康复。", "dup")]
    info = BuildInfo(kind="sft", builder="t", command="t")
    manifest = finish_build(tmp_path / "b", records, [], info, curation_steps("sft", CurationSettings()))
    assert manifest.records_total == len(ANSWERS)
    assert set(manifest.curation) >= {"validate", "quality", "pii", "safety", "dedup"}
    assert manifest.rejects_by_reason == {"dedup/exact_duplicate": 1}  # boilerplate stripped first, then exact copy
    off = finish_build(tmp_path / "c", records, [], BuildInfo(kind="sft", builder="t", command="t"),
                       curation_steps("sft", CurationSettings(quality=False, dedup=False)))
    assert off.records_total == len(records) and "dedup" not in off.curation


def test_invalid_rows_become_rejects_naming_file_and_row(tmp_path):
    import pyarrow.parquet as pq

    src = make_dir(tmp_path / "in", [sft(f"问题{i}", a, f"g{i}") for i, a in enumerate(ANSWERS[:3])])
    shard = next((src / "data").glob("train-*.parquet"))
    table = pq.read_table(shard).to_pylist()
    table[1]["messages"] = [{"role": "assistant", "content": "只有回答"}]
    pq.write_table(pq.read_table(shard).from_pylist(table, schema=pq.read_schema(shard)), shard)
    (src / "manifest.json").unlink()  # a shard changed by hand no longer matches the manifest; read as plain parquet
    invoke("filter", src, "--out", tmp_path / "out")
    (rej,) = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rej["stage"] == "read" and rej["source"]["file"] == str(shard) and rej["source"]["line"] == 1
    assert len(rows(tmp_path / "out")) == 2


def test_manifest_and_card_record_the_command_as_typed(tmp_path, monkeypatch):
    import sys

    src = make_dir(tmp_path / "in", [sft(f"问题{i}：该怎么办？", a, f"g{i}") for i, a in enumerate(ANSWERS)])
    for cmd, extra in (("filter", ["--pii-action", "drop", "--no-safety"]), ("dedup", ["--threshold", "0.7"])):
        out = tmp_path / cmd
        args = [cmd, str(src), "--out", str(out), *extra]
        monkeypatch.setattr(sys, "argv", ["medmill", *args])
        invoke(*args)
        command = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["command"]
        assert command == "medmill " + " ".join(args)  # once just "medmill filter": options lost
        assert f"Command: `{command}`" in (out / "README.md").read_text(encoding="utf-8")


def test_filter_and_dedup_keep_the_inputs_licenses(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset_dir(a, [sft("问题一：该怎么办？", ANSWERS[0], "g0")], [], BuildInfo(kind="sft", builder="t", command="t", license="cc-by-4.0"), render_card=render_card)
    write_dataset_dir(b, [sft("问题二：该怎么办？", ANSWERS[1], "g1")], [], BuildInfo(kind="sft", builder="t", command="t", license="mit"), render_card=render_card)
    invoke("filter", a, "--out", tmp_path / "f")
    card = (tmp_path / "f" / "README.md").read_text(encoding="utf-8")
    assert "license: cc-by-4.0" in card  # was always `other`, the input's license lost
    assert json.loads((tmp_path / "f" / "manifest.json").read_text(encoding="utf-8"))["license"] == "cc-by-4.0"
    invoke("dedup", a, b, "--out", tmp_path / "d")
    card = (tmp_path / "d" / "README.md").read_text(encoding="utf-8")
    assert "license: other" in card  # two licenses: each shard keeps its own in the sources table
    assert "| cc-by-4.0 |" in card and "| mit |" in card and "not stated" not in card


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["filter", "--min-chars", "-1"], "--min-chars: .*greater than or equal to 0"),  # was a pydantic traceback
        (["filter", "--min-cjk-share", "2"], "--min-cjk-share: .*less than or equal to 1"),
        (["filter", "--min-chars", "100", "--max-chars", "10"], "--min-chars 100 is above --max-chars 10"),  # was: every record dropped
        (["dedup", "--decontam-ngram", "1", "--decontaminate", "EVAL"], "--decontam-ngram: "),
    ],
)
def test_bad_curation_values_are_one_line_errors(tmp_path, args, message):
    src = make_dir(tmp_path / "s", [sft("头痛怎么办？", ANSWERS[0], "x")])
    ev = tmp_path / "eval.jsonl"
    ev.write_text('{"question": "头痛怎么办"}\n', encoding="utf-8")
    argv = [args[0], src, "--out", tmp_path / "o", *[str(ev) if a == "EVAL" else a for a in args[1:]]]
    with pytest.raises(MedmillError, match=message):
        invoke(*argv)
    assert not (tmp_path / "o").exists()
