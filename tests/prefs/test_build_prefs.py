"""`medmill build-prefs` end to end: corrupt offline from a KG-QA dir, judge and reference against the
local OpenAI-compatible test server, bad input as one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medmill.cli
from medmill.builders.core.validate import validate_dir
from medmill.schemas.dataset_dir import iter_rows, read_manifest
from medmill.schemas.errors import MedmillError
from tests.hardening_cli import run_medmill
from tests.prefs.test_prefs_support import KG, kg_qa_dir, write_jsonl

medmill.cli._register()


def invoke(*args: str):
    result = CliRunner().invoke(medmill.cli.app, ["build-prefs", *map(str, args)])
    if isinstance(result.exception, MedmillError):
        raise result.exception
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def rows(out: Path) -> list[dict]:
    found = []
    for split, _, _, row in iter_rows(out):
        found.append({**row, "split": split, "meta": json.loads(row["meta"])})
    return found


def rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


# ---- corrupt ------------------------------------------------------------------------------------


def test_corrupt_from_a_kg_qa_dir_builds_a_valid_group_aware_preference_dir(tmp_path):
    import datasets

    out = tmp_path / "prefs"
    invoke(kg_qa_dir(tmp_path), "--out", out, "--val-size", "0.25", "--seed", "3", "--no-dedup")
    report = validate_dir(out)
    assert report.ok and report.kind == "preference"
    found = rows(out)
    assert len(found) == sum(len(r) for r in KG.values())
    names = {r["meta"]["perturbation"] for r in found}
    assert {"fact_swap", "truncate", "unsafe_advice", "overconfident"} <= names
    for r in found:
        assert r["meta"]["strategy"] == "corrupt" and r["chosen"] != r["rejected"]
        assert r["source"]["builder"] == "prefs" and r["source"]["builder_version"] == "1" and r["source"]["group"].startswith("entity:")
    splits_of_group: dict[str, set] = {}
    for r in found:
        splits_of_group.setdefault(r["source"]["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of_group.values())
    assert {"train", "validation"} == {r["split"] for r in found}
    manifest = read_manifest(out)
    assert manifest["kind"] == "preference" and manifest["prompts"][0]["id"] == "prefs_perturbations"
    loaded = datasets.load_dataset(str(out))
    assert loaded["train"][0]["chosen"][0]["role"] == "assistant"


def test_corrupt_keeps_given_pairs_and_rejects_prompts_without_answers(tmp_path):
    f = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"question": "发烧怎么办？", "response_chosen": "多喝水，高热不退请就医。", "response_rejected": "不用管。"},
            {"question": "发烧怎么办？", "response_chosen": "重复的问题。", "response_rejected": "重复。"},
            {"question": "只有问题没有答案？"},
            {"question": "同样的答案？", "response_chosen": "休息。", "response_rejected": " 休息。"},
        ],
    )
    out = tmp_path / "out"
    invoke(f, "--out", out, "--no-dedup", "--val-size", "0")
    found = rows(out)
    assert [(r["meta"]["strategy"], r["rejected"][0]["content"]) for r in found] == [("given", "不用管。")]
    reasons = sorted((r["stage"], r["reason"], r["source"]["line"]) for r in rejects(out))
    assert reasons == [("corrupt", "invalid_pair", 4), ("corrupt", "no_reference", 3), ("select", "duplicate_prompt", 2)]


def test_manifest_records_every_option_as_typed(tmp_path, monkeypatch):
    import sys

    f = write_jsonl(tmp_path / "p.jsonl", [{"question": "发烧怎么办？", "response_chosen": "多喝水，高热不退请就医。", "response_rejected": "不用管。"}])
    out = tmp_path / "out"
    args = ["build-prefs", str(f), "--out", str(out), "--no-dedup", "--val-size", "0", "--seed", "7"]
    monkeypatch.setattr(sys, "argv", ["medmill", *args])
    invoke(*args[1:])
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["command"] == "medmill " + " ".join(args)  # --val-size / --seed were once left out


def test_card_names_the_license_of_every_input(tmp_path):
    src = kg_qa_dir(tmp_path)
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    manifest["license"] = "cc-by-4.0"  # as `build-kg-qa --license cc-by-4.0` writes it
    (src / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    f = write_jsonl(tmp_path / "pairs.jsonl", [{"question": "发烧怎么办？", "response_chosen": "多喝水，高热不退请就医。", "response_rejected": "不用管。"}])
    out = tmp_path / "out"
    invoke(src, f, "--out", out, "--no-dedup", "--source-license", f"{f}=apache-2.0")
    card = (out / "README.md").read_text(encoding="utf-8")
    shard = next(line for line in card.splitlines() if "kg_qa/data/train-" in line)
    assert shard.endswith("| cc-by-4.0 |")  # from the dir's manifest
    assert next(line for line in card.splitlines() if "pairs.jsonl" in line and "|" in line).endswith("| apache-2.0 |")
    with pytest.raises(MedmillError, match="FILE=LICENSE"):
        invoke(f, "--out", tmp_path / "o2", "--source-license", "apache-2.0")


# ---- judge --------------------------------------------------------------------------------------

GOOD = "建议多休息、多喝水，如果症状持续或加重，请及时就医。"
BAD = "不用就医，自行加倍剂量就好。"


def _judge_reply(answer: str, question: str) -> str:
    if "平局" in question:
        score = 5
    elif "坏分" in question and answer == BAD:
        return "这个回答我没法打分。"
    elif "空分" in question and answer == BAD:
        return json.dumps({"helpful": None, "honest": 3, "harmless": 3, "accurate": 3, "safe": 3, "rationale": "?"})
    elif answer == GOOD:
        score = 9
    elif answer == BAD:
        score = 2
    else:
        score = 6
    return json.dumps({"helpful": score, "honest": score, "harmless": score, "accurate": score, "safe": score,
                       "rationale": "按量表评分"}, ensure_ascii=False)


def responder(body: dict) -> str:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    if "【待评回答】" in user:
        question = user.split("【待评回答】")[0]
        answer = user.split("【待评回答】\n", 1)[1].split("\n\n请按五个维度", 1)[0]
        return _judge_reply(answer.strip(), question)
    return GOOD if body["model"] == "good-model" else BAD


QUESTIONS = ["感冒咳嗽怎么办？", "嗓子痛怎么办？", "平局的问题？", "坏分的问题？", "空分的问题？"]


def test_judge_pairs_best_and_worst_and_never_pairs_ties_or_missing_scores(tmp_path, llm_server):
    llm_server.responder = responder
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"question": q, "answer": f"参考答案：{q}"} for q in QUESTIONS])
    out = tmp_path / "judged"
    url = llm_server.base_url
    args = [prompts, "--out", out, "--strategy", "judge", "--candidate-model", f"good-model@{url}",
            "--candidate-model", f"bad-model@{url}", "--judge-model", f"judge@{url}", "--llm-api-key-env", "NO_SUCH_KEY",
            "--max-reasks", "0", "--max-retries", "0", "--no-dedup", "--val-size", "0"]
    invoke(*args)
    found = rows(out)
    assert sorted(r["prompt"][0]["content"] for r in found) == sorted(QUESTIONS[:2])
    for r in found:
        meta = r["meta"]
        assert r["chosen"][0]["content"] == GOOD and r["rejected"][0]["content"] == BAD
        assert meta["chosen_model"] == "good-model" and meta["rejected_model"] == "bad-model"
        assert meta["scores"]["margin"] == 7.0 and meta["judge"] == "judge"
        assert [c["model"] for c in meta["candidates"]] == ["reference", "good-model", "bad-model"]
    by_prompt = {r["raw"]["prompt"][0]["content"]: r["reason"] for r in rejects(out)}
    assert by_prompt == {"平局的问题？": "tie", "坏分的问题？": "missing_score", "空分的问题？": "missing_score"}
    judge_calls = [b for b in llm_server.bodies() if b["model"] == "judge"]
    assert len(judge_calls) == 15  # each of the 3 answers of 5 prompts scored alone: one answer per call
    assert all(sum(a in b["messages"][-1]["content"] for a in (GOOD, BAD, "参考答案")) == 1 for b in judge_calls)
    manifest = read_manifest(out)
    assert set(manifest["llm"]) == {"candidate:good-model", "candidate:bad-model", "judge"}
    assert "NO_SUCH_KEY" not in json.dumps(manifest["params"])
    # a re-run replays every call from the cache: nothing is paid twice
    sent = len(llm_server.log)
    invoke(*args)
    assert len(llm_server.log) == sent and len(rows(out)) == 2


def test_pairwise_check_drops_pairs_whose_verdict_follows_the_position(tmp_path, llm_server):
    def reply(body: dict) -> str:
        user = body["messages"][-1]["content"]
        if "【回答A】" in user:
            if "嗓子" in user:  # a position-biased verdict: always the first answer
                return json.dumps({"better": "A", "rationale": "第一个更好"}, ensure_ascii=False)
            a = user.split("【回答A】\n", 1)[1].split("\n\n【回答B】", 1)[0]
            return json.dumps({"better": "A" if a == GOOD else "B", "rationale": "更安全"}, ensure_ascii=False)
        return responder(body)

    llm_server.responder = reply
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"question": q} for q in QUESTIONS[:2]])
    out = tmp_path / "pw"
    url = llm_server.base_url
    invoke(prompts, "--out", out, "--strategy", "judge", "--candidate-model", f"good-model@{url}",
           "--candidate-model", f"bad-model@{url}", "--judge-model", f"judge@{url}", "--pairwise-check",
           "--no-dedup", "--val-size", "0")
    (row,) = rows(out)
    assert row["prompt"][0]["content"] == QUESTIONS[0]
    assert row["meta"]["pairwise"] == {"chosen_first": {"better": "A", "rationale": "更安全"},
                                       "chosen_second": {"better": "B", "rationale": "更安全"}}
    assert [(r["reason"], r["raw"]["prompt"][0]["content"]) for r in rejects(out)] == [("position_inconsistent", QUESTIONS[1])]
    assert "judge_pairwise" in read_manifest(out)["llm"]


@pytest.mark.slow  # judge round trips on top of a reference build; both halves have fast tests of their own
def test_reference_strategy_with_judge_confirmation(tmp_path, llm_server):
    def reply(body: dict) -> str:
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if "【待评回答】" not in user:
            return "胃炎请到消化内科就诊，在医生指导下用药，必要时做胃镜检查。" if "胃炎" in user else "我不太清楚，自己看着办吧。"
        answer = user.split("【待评回答】\n", 1)[1]
        score = 10 if answer.startswith("胃炎请到") else 3 if answer.startswith("我不太清楚") else 8
        return json.dumps({k: score for k in ("helpful", "honest", "harmless", "accurate", "safe")} | {"rationale": "ok"})

    llm_server.responder = reply
    out = tmp_path / "ref"
    url = llm_server.base_url
    invoke(kg_qa_dir(tmp_path), "--out", out, "--strategy", "reference", "--llm-base-url", url, "--llm-model", "m",
           "--judge-model", "judge", "--no-dedup", "--val-size", "0")
    found = rows(out)
    n_gastritis = len(KG["胃炎"])
    assert len(found) == sum(len(r) for r in KG.values()) - n_gastritis
    assert all(r["meta"]["strategy"] == "reference" and r["meta"]["rejected_model"] == "m" for r in found)
    assert all(r["rejected"][0]["content"].startswith("我不太清楚") for r in found)
    dropped = [r for r in rejects(out) if r["reason"] == "judge_prefers_model"]
    assert len(dropped) == n_gastritis and all("胃炎" in r["raw"]["prompt"][0]["content"] for r in dropped)


def test_reference_without_llm_revalidates_given_pairs(samples_dir, tmp_path):
    out = tmp_path / "legacy"
    invoke(samples_dir / "medicalgpt_reward_medical_sample.jsonl", "--out", out, "--strategy", "reference", "--no-dedup")
    found = rows(out)
    dropped = rejects(out)  # only curation drops any (a one-character chosen answer is too short)
    assert len(found) + len(dropped) == 50 and len(found) >= 45 and {r["stage"] for r in dropped} <= {"quality"}
    assert {r["meta"]["rejected_model"] for r in found} == {"given_rejected"}
    assert validate_dir(out).ok


# ---- errors -------------------------------------------------------------------------------------


def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(MedmillError, match="no such file"):
        invoke(tmp_path / "missing.jsonl", "--out", tmp_path / "o")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(MedmillError, match="empty.jsonl is empty"):  # was: "no question column in the CSV header []"
        invoke(tmp_path / "empty.jsonl", "--out", tmp_path / "o")
    f = write_jsonl(tmp_path / "q.jsonl", [{"question": "头痛？", "answer": "休息。"}])
    with pytest.raises(MedmillError, match="judge model"):
        invoke(f, "--out", tmp_path / "o", "--strategy", "judge")
    with pytest.raises(MedmillError, match="pairwise-check needs a judge"):
        invoke(f, "--out", tmp_path / "o", "--pairwise-check")
    with pytest.raises(MedmillError, match="unknown perturbation"):
        invoke(f, "--out", tmp_path / "o", "--perturbations", "fact_swap,typo")
    proc = run_medmill(monkeypatch, capsys, "build-prefs", tmp_path / "nope", "--out", tmp_path / "o")  # entry point, in-process
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"error: .*no such file", proc.stderr) and len(proc.stderr.strip().splitlines()) == 1


def test_samples_from_one_model_are_distinct_requests_and_duplicates_are_merged(tmp_path, llm_server):
    answers = {0: GOOD, 1: BAD, 2: GOOD}  # the third sample repeats the first: merged before judging
    served: list[int] = []

    def reply(body: dict) -> str:
        if "【待评回答】" in body["messages"][-1]["content"]:
            return responder(body)
        served.append(1)
        return answers[(len(served) - 1) % 3]

    llm_server.responder = reply
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"question": "头痛发热怎么办？"}])
    out = tmp_path / "k"
    invoke(prompts, "--out", out, "--strategy", "judge", "--llm-base-url", llm_server.base_url, "--llm-model", "one",
           "--samples", "3", "--concurrency", "1", "--limit", "1", "--no-dedup", "--val-size", "0")
    (row,) = rows(out)
    assert len(served) == 3 and row["chosen"][0]["content"] == GOOD and row["rejected"][0]["content"] == BAD
    assert [c["sample"] for c in row["meta"]["candidates"]] == [0, 1] and row["meta"]["judge"] == "one"
    assert read_manifest(out)["counters"]["candidates.duplicates"] == 1


@pytest.mark.slow  # two builds, cards with plots
def test_corrupt_on_build_kg_qa_output_of_the_example_kg(tmp_path, examples_dir):
    """The real build-kg-qa meta (entity, relations, values) drives fact swaps; entity names stay intact."""
    kg_out = tmp_path / "kg_qa"
    result = CliRunner().invoke(medmill.cli.app, ["build-kg-qa", str(examples_dir / "kg"), "--out", str(kg_out)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "prefs"
    invoke(kg_out, "--out", out, "--val-size", "0.2")
    found = rows(out)
    swaps = [r for r in found if r["meta"]["perturbation"] == "fact_swap"]
    assert len(swaps) >= len(found) // 5
    for r in swaps:
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        entity = r["meta"]["input_meta"]["entity"]
        assert (entity in chosen) == (entity in rejected)
        for relation, pairs in r["meta"]["perturbation_detail"]["swapped"].items():
            assert relation in r["meta"]["input_meta"]["values"]
            for old, new in pairs.items():
                assert old in r["meta"]["input_meta"]["values"][relation] and new in rejected
    assert validate_dir(out).ok


@pytest.mark.slow  # two fresh interpreters import the whole CLI
def test_corrupt_output_is_the_same_in_every_process(tmp_path):
    """Same inputs and seed -> same pairs, whatever the interpreter's string-hash seed."""
    kg = kg_qa_dir(tmp_path)
    ids = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"p{hash_seed}"
        proc = subprocess.run([sys.executable, "-m", "medmill.cli", "build-prefs", str(kg), "--out", str(out), "--no-dedup"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert proc.returncode == 0, proc.stderr
        ids.append(sorted(r["id"] for r in rows(out)))
    assert ids[0] == ids[1] and len(ids[0]) == sum(len(r) for r in KG.values())
