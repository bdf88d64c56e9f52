"""build-kg-qa --mode llm: pair checks, rejects that say why, manifest, and resume after kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medmill.builders.kg_qa.scenario_qa import (
    EntityFacts,
    LLMQAConfig,
    check_pair,
    entity_facts,
    parse_mix,
    split_by_mix,
)
from medmill.cli import _register, app
from medmill.schemas.errors import MedmillError
from medmill.schemas.sources import KGEntity
from tests.llm_server import FakeLLMServer, Faults, KillSwitch

# A small cMeKG-style KG written for these tests: (name, symptoms, department, checks, treatments)
_DISEASES = [
    ("高血压", ["头痛", "头晕", "心悸"], "心血管内科", ["血压测量", "心电图"], ["限盐饮食", "降压药物治疗"]),
    ("糖尿病", ["多饮", "多尿", "体重下降"], "内分泌科", ["空腹血糖", "糖化血红蛋白"], ["饮食控制", "胰岛素治疗"]),
    ("痛风", ["关节红肿", "关节剧痛"], "风湿免疫科", ["血尿酸", "关节超声"], ["低嘌呤饮食", "降尿酸治疗"]),
    ("支气管哮喘", ["喘息", "胸闷", "咳嗽"], "呼吸内科", ["肺功能检查", "支气管激发试验"], ["吸入糖皮质激素"]),
    ("胃食管反流病", ["烧心", "反酸", "胸骨后疼痛"], "消化内科", ["胃镜", "食管pH监测"], ["抑酸治疗", "抬高床头"]),
    ("缺铁性贫血", ["乏力", "面色苍白", "头晕"], "血液内科", ["血常规", "血清铁蛋白"], ["补充铁剂"]),
    ("偏头痛", ["单侧搏动性头痛", "畏光", "恶心"], "神经内科", ["头颅磁共振"], ["避免诱因", "止痛治疗"]),
    ("甲状腺功能亢进症", ["怕热多汗", "心悸", "体重下降"], "内分泌科", ["甲状腺功能", "甲状腺超声"], ["抗甲状腺药物"]),
    ("急性阑尾炎", ["转移性右下腹痛", "发热"], "普通外科", ["血常规", "腹部超声"], ["阑尾切除术"]),
    ("带状疱疹", ["簇集性水疱", "神经痛"], "皮肤科", ["皮损检查"], ["抗病毒治疗"]),
    ("肾结石", ["腰痛", "血尿"], "泌尿外科", ["泌尿系超声", "尿常规"], ["多饮水", "体外冲击波碎石"]),
    ("过敏性鼻炎", ["鼻痒", "打喷嚏", "流清涕"], "耳鼻喉科", ["过敏原检测"], ["鼻用激素", "避免接触过敏原"]),
]
ALWAYS_INVALID = "痛风"  # the fake model never answers this one in JSON
INVALID_FIRST = "糖尿病"  # ... and answers this one in JSON only when re-asked


def write_kg(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for name, symptoms, dept, checks, cures in _DISEASES:
            rec = {"中心词": name, "相关症状": symptoms, "所属科室": [dept], "检查": checks, "治疗": cures}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def scenario_model(body: dict) -> str:
    """A deterministic fake LLM: one good pair, one meta-talk pair, one English pair per entity."""
    prompt = body["messages"][1]["content"]
    name = re.search(r"「(.+?)」", prompt).group(1)
    facts = dict(re.findall(r"^- (\S+?)：(.+)$", prompt, flags=re.M))
    symptom = facts["相关症状"].split("、")[0]
    check = facts["检查"].split("、")[0]
    if name == ALWAYS_INVALID or (name == INVALID_FIRST and len(body["messages"]) == 2):
        return "好的，这是一些问答：问题是……回答是……"
    pairs = [
        {"question": f"医生您好，我今年52岁，男性，最近两周反复出现{symptom}，休息后也不缓解，需要做什么检查？",
         "answer": f"您的症状需要警惕{name}，建议先做{check}，并到{facts['所属科室']}就诊。"},
        {"question": f"我女儿28岁，最近总说{symptom}，这是怎么回事？",
         "answer": f"根据提供的信息，{symptom}可能与{name}有关。"},
        {"question": "Doctor, I have had a headache for two weeks, what should I do?",
         "answer": f"Please check {check} at the hospital as soon as possible."},
    ]
    return json.dumps({"pairs": pairs}, ensure_ascii=False)


# --- pair checks ------------------------------------------------------------------------------------

FACTS = EntityFacts("- 症状：头痛、头晕\n- 检查：血压测量", ["头痛", "头晕", "血压测量"])
CFG = LLMQAConfig()


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("医生，我今年60岁，最近早上起床后常常头痛，是怎么回事？", "这种情况可能是血压升高引起的，建议先做血压测量。", None),
        ("头痛？", "这种情况可能是血压升高引起的，建议先做血压测量。", "question_too_short"),
        ("医生，我今年60岁，最近早上起床后常常头痛，是怎么回事？", "去医院。", "answer_too_short"),
        ("I am 60 and wake up with a headache every day, why?", "这种情况可能是血压升高引起的，建议先做血压测量。", "not_chinese"),
        ("医生，我今年60岁，最近早上起床后常常头痛，是怎么回事？", "作为AI，我建议您先做血压测量，再去医院看看。", "meta_talk"),
        ("医生，我今年60岁，最近早上起床后常常头痛，是怎么回事？", "根据提供的信息，建议您先做血压测量，再去医院。", "meta_talk"),
        ("以下哪项是高血压的症状？请说明理由，谢谢医生。", "头痛和头晕都是常见症状，建议做血压测量。", "meta_talk"),
        ("医生，我今年60岁，最近早上起床后常常头痛，是怎么回事？", "建议您保持良好作息，注意饮食清淡，多休息。", "no_kg_value"),
        ("头痛头晕的人建议先做血压测量吗？我该怎么办呢？", "头痛头晕的人建议先做血压测量。", "restates_answer"),
    ],
)
def test_check_pair_says_why(question: str, answer: str, reason: str | None) -> None:
    problem = check_pair(question, answer, FACTS, CFG)
    assert (problem[0] if problem else None) == reason


def test_entity_facts_lists_relations_and_checkable_values() -> None:
    entity = KGEntity(name="高血压", type="疾病", relations={"症状": ["头痛", "头晕"], "科室": ["心内科"]},
                      attributes={"简介": "高血压是以体循环动脉压升高为主要特征的临床综合征，可伴心脑肾损害。", "医保": "是"})
    facts = entity_facts(entity, LLMQAConfig())
    assert facts.text.splitlines()[:2] == ["- 症状：头痛、头晕", "- 科室：心内科"]
    assert {"头痛", "头晕", "心内科", "可伴心脑肾损害"} <= set(facts.values)
    assert "是" not in facts.values  # one-character values would match any answer


def test_mix_parsing_and_stable_assignment() -> None:
    assert parse_mix("template=1,llm=3") == {"template": 0.25, "llm": 0.75}
    for bad in ("template=x", "gpt=1", "template=0,llm=0", "llm"):
        with pytest.raises(MedmillError):
            parse_mix(bad)
    entities = [KGEntity(name=f"病{i}", relations={"症状": ["发热"]}) for i in range(200)]
    template, llm = split_by_mix(entities, {"template": 0.5, "llm": 0.5}, seed=1)
    assert 70 < len(llm) < 130 and len(template) + len(llm) == 200
    _t2, llm_more = split_by_mix(entities + [KGEntity(name="新病", relations={"症状": ["咳嗽"]})],
                                 {"template": 0.5, "llm": 0.5}, seed=1)
    assert {e.name for e in llm} <= {e.name for e in llm_more}  # adding an entity moves no other one


# --- the command -------------------------------------------------------------------------------------


def cli(args: list[str]):
    _register()
    return CliRunner().invoke(app, args)


def llm_args(server: FakeLLMServer, kg: Path, out: Path) -> list[str]:
    return ["build-kg-qa", str(kg), "--mode", "llm", "--llm-base-url", server.base_url, "--llm-model", "fake-med",
            "--out", str(out), "--per-entity", "3", "--no-dedup"]


def test_llm_mode_builds_records_and_rejects_that_say_why(tmp_path: Path) -> None:
    kg = write_kg(tmp_path / "kg.jsonl")
    with FakeLLMServer(responder=scenario_model) as server:
        result = cli(llm_args(server, kg, tmp_path / "out") + ["--max-reasks", "1"])
        assert result.exit_code == 0, result.output
        bodies = server.bodies()
    assert all(b["response_format"]["type"] == "json_schema" for b in bodies)
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pq.read_table(out / manifest["splits"]["train"]["files"][0]).to_pylist()
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    by_entity = {r["source"]["ref"] for r in rows}
    assert by_entity == {d[0] for d in _DISEASES} - {ALWAYS_INVALID}
    assert len(rows) == len(_DISEASES) - 1  # one good pair per answered entity
    reasons = {(r["stage"], r["reason"]) for r in rejects}
    assert reasons == {("llm", "invalid_output"), ("build", "meta_talk"), ("build", "not_chinese")}
    failed = next(r for r in rejects if r["reason"] == "invalid_output")
    assert failed["source"]["ref"] == ALWAYS_INVALID and failed["raw"].startswith("好的")
    assert failed["source"]["file"] == str(kg) and failed["source"]["line"] == 3
    meta = json.loads(rows[0]["meta"])
    assert meta["prompt"] == "kg_qa_scenario@1" and meta["mode"] == "llm" and meta["values"]
    assert {"id": "kg_qa_scenario", "version": "1"} in manifest["prompts"]
    assert manifest["llm"]["model"] == "fake-med" and manifest["llm"]["base_url_host"] == f"127.0.0.1:{server.port}"
    assert manifest["usage"]["requests"] == len(_DISEASES) and manifest["usage"]["reasks"] == 2


def test_mix_builds_both_kinds(tmp_path: Path) -> None:
    kg = write_kg(tmp_path / "kg.jsonl")
    with FakeLLMServer(responder=scenario_model) as server:
        result = cli(llm_args(server, kg, tmp_path / "out")[:-1] + ["--mix", "template=0.5,llm=0.5", "--seed", "3"])
        assert result.exit_code == 0, result.output
        asked = {re.search(r"「(.+?)」", b["messages"][1]["content"]).group(1) for b in server.bodies()}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    rows = pq.read_table(tmp_path / "out" / manifest["splits"]["train"]["files"][0]).to_pylist()
    assert {r["source"]["builder"] for r in rows} == {"kg-qa"}
    mode = {r["id"]: json.loads(r["meta"])["mode"] for r in rows}
    llm_entities = {r["source"]["ref"] for r in rows if mode[r["id"]] == "llm"}
    template_entities = {r["source"]["group"].removeprefix("entity:") for r in rows
                         if mode[r["id"]] == "template" and r["source"]["group"].startswith("entity:")}
    assert llm_entities and template_entities
    assert llm_entities <= asked and template_entities.isdisjoint(asked)
    assert len(asked | template_entities) == len(_DISEASES)


def test_401_is_one_line_and_leaks_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    from medmill.cli import main

    secret = "sk-live-DO-NOT-PRINT-42"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    kg = write_kg(tmp_path / "kg.jsonl")
    with FakeLLMServer(api_key="another") as server:
        monkeypatch.setattr(sys, "argv", ["medmill", *llm_args(server, kg, tmp_path / "out")])
        with pytest.raises(SystemExit) as exit_:
            main()  # the real entry point: MedmillError -> one line on stderr, exit 2
    out = capsys.readouterr()
    assert exit_.value.code == 2
    assert "OPENAI_API_KEY" in out.err and "401" in out.err and "Traceback" not in out.err
    assert secret not in out.out + out.err
    assert not (tmp_path / "out" / "manifest.json").exists()
    for f in (tmp_path / "out").rglob("*"):
        assert secret.encode() not in f.read_bytes()


# --- kill -9 and resume ------------------------------------------------------------------------------


def dataset_rows(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [row for split in manifest["splits"].values() for f in split["files"] for row in pq.read_table(out / f).to_pylist()]
    return sorted(rows, key=lambda r: r["id"])


def rejects_of(out: Path) -> list[str]:
    return sorted((out / "rejects.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_killed_build_resumes_without_paying_twice_and_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    kg = write_kg(tmp_path / "kg.jsonl")
    env = {**os.environ, "OPENAI_API_KEY": "k"}
    extra = ["--concurrency", "3", "--val-size", "0.2", "--max-reasks", "1"]
    with FakeLLMServer(responder=scenario_model, latency=0.15) as server:
        switch = KillSwitch(server, after=5, rates=Faults(rate_429=0.10, rate_500=0.05, rate_invalid_json=0.05, seed=11))
        server.faults = Faults(script=switch)
        cmd = [sys.executable, "-m", "medmill.cli", *llm_args(server, kg, tmp_path / "out"), *extra]
        switch.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        switch.proc.wait(timeout=120)
        assert switch.proc.returncode == -signal.SIGKILL and switch.state == "killed"
        assert not (tmp_path / "out" / "manifest.json").exists()
        paid_before_kill = sum(server.served.values())
        assert 5 <= paid_before_kill < len(_DISEASES) + 1  # killed midway

        switch.state = "resumed"  # the same command again, the same faults
        switch.rates = Faults(rate_429=0.10, rate_500=0.05, rate_invalid_json=0.05, seed=12)
        server.faults = Faults(script=lambda body, seen: switch.rates.draw(body, seen))
        resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert server.duplicates() == {}  # no completion was paid twice
        assert sum(server.served.values()) == len(_DISEASES) + 2  # 12 entities + 2 re-asks, each once
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert manifest["usage"]["cache_hits"] >= paid_before_kill

    with FakeLLMServer(responder=scenario_model) as fresh:  # the uninterrupted run, no faults
        clean = cli([*llm_args(fresh, kg, tmp_path / "clean"), *extra])
        assert clean.exit_code == 0, clean.output
    assert dataset_rows(tmp_path / "out") == dataset_rows(tmp_path / "clean")
    assert rejects_of(tmp_path / "out") == rejects_of(tmp_path / "clean")
    # every entity produced records or a reject naming it
    named = {r["source"]["ref"] for r in dataset_rows(tmp_path / "out")}
    named |= {json.loads(line)["source"]["ref"] for line in rejects_of(tmp_path / "out")}
    assert named == {d[0] for d in _DISEASES}


def test_llm_mode_rerun_does_not_read_its_own_output_inside_the_input_folder(tmp_path: Path) -> None:
    folder = tmp_path / "kg"
    folder.mkdir()
    write_kg(folder / "kg.jsonl")
    out, cache = folder / "out", folder / "shared_cache.sqlite"
    with FakeLLMServer(responder=scenario_model) as server:
        args = llm_args(server, folder, out) + ["--max-reasks", "1", "--cache", str(cache)]
        first = cli(args)
        assert first.exit_code == 0, first.output
        again = cli(args)  # a resume/re-run: out/ (parquet, rejects, manifest) and the cache now exist
        assert again.exit_code == 0, again.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["kg.jsonl"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert not [r for r in rejects if r["stage"] == "read"]
    assert manifest["usage"]["calls_sent"] == 0


def test_mix_with_no_llm_share_needs_no_model_or_server(tmp_path: Path) -> None:
    kg = write_kg(tmp_path / "kg.jsonl")
    result = cli(["build-kg-qa", str(kg), "--out", str(tmp_path / "out"), "--mix", "template=1,llm=0", "--no-dedup"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["records_total"] > 0 and manifest["counters"]["entities_template"] == len(_DISEASES)
    assert manifest["usage"]["calls_sent"] == 0
    assert not (tmp_path / "out" / "llm_cache.sqlite").exists()
