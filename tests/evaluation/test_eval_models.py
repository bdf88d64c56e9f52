"""medmill eval / medmill chat end to end on tiny CPU models: forced behaviours give known scores,
runs resume from the item cache, the CLI reports; marked slow (every test loads or trains a model)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medmill.cli import _register, app
from tests.evaluation.eval_support import (
    ForwardCounter,
    force_letter,
    make_tiny,
    make_tiny_scorer,
    read_results,
    score_by_length,
    write_kg_sft_dir,
    write_mcq_dir,
    write_pref_dir,
    write_pt_dir,
)

_register()
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # every test loads a tiny model (torch + transformers)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_data")
    return {
        "mcq": write_mcq_dir(root / "mcq"),
        "kg": write_kg_sft_dir(root / "kg"),
        "pref": write_pref_dir(root / "pref"),
        "pt": write_pt_dir(root / "pt"),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, dirs):
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", [dirs["mcq"], dirs["kg"], dirs["pt"]])


def invoke(*args, input: str | None = None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def forced_a(monkeypatch):
    """Every model eval loads answers A; `counter.calls` counts forward passes."""
    import medmill.evaluation.models as models

    counter = ForwardCounter()
    real = models.load_for_eval
    monkeypatch.setattr(models, "load_for_eval", lambda *a, **k: force_letter(real(*a, **k), "A", counter))
    return counter


def _test_keys(mcq_dir: Path) -> list[dict]:
    from medmill.evaluation.sources import dir_rows

    _, split, rows = dir_rows(mcq_dir)
    assert split == "test"
    return [r["meta"] for r in rows]


# --- mcq ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scoring", ["loglik", "generate"])
def test_always_a_scores_the_share_of_a_keys(tiny, dirs, tmp_path, forced_a, scoring):
    metas = _test_keys(dirs["mcq"])
    share_a = sum(m["answer"] == "A" for m in metas) / len(metas)
    assert 0 < share_a < 1 and any(len(m["answer"]) > 1 for m in metas)
    out = tmp_path / "out"
    invoke("eval", "--task", "mcq", "--model", tiny, "--data", dirs["mcq"], "--out", out, "--scoring", scoring, "--device", "cpu")
    res = read_results(out)["results"][str(tiny)][str(dirs["mcq"])]
    assert res["items"] == len(metas)
    assert res["accuracy"] == share_a
    if scoring == "loglik":
        assert res["accuracy_sum"] == share_a and res["accuracy_norm"] == share_a
    else:
        assert res["unparsed"] == 0
    for category, got in res["by_category"].items():
        part = [m for m in metas if m["category"] == category]
        assert got["items"] == len(part)
        assert got["accuracy"] == sum(m["answer"] == "A" for m in part) / len(part)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "症状" in html and "治疗" in html and f"{share_a:.4f}" in html


def test_mcq_run_resumes_from_item_cache(tiny, dirs, tmp_path, forced_a):
    out = tmp_path / "out"
    args = ("eval", "--task", "mcq", "--model", tiny, "--data", dirs["mcq"], "--out", out, "--device", "cpu", "--batch-size", "4")
    invoke(*args)
    first = read_results(out)["results"]
    full_calls = forced_a.calls
    cache = next((out / "items" / "mcq").rglob("*.jsonl"))
    lines = cache.read_text(encoding="utf-8").splitlines()
    # a run killed after 3 items, mid-write of the 4th
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10], encoding="utf-8")
    forced_a.calls = 0
    invoke(*args)
    assert read_results(out)["results"] == first
    assert 0 < forced_a.calls < full_calls  # only the missing items were scored again
    forced_a.calls = forced_a.loads = 0
    invoke(*args)  # everything cached: the weights are not even loaded
    assert forced_a.calls == forced_a.loads == 0 and read_results(out)["results"] == first


def test_two_models_side_by_side_and_overlap(tiny, dirs, tmp_path):
    from medmill.builders.core.writer import BuildInfo, write_dataset_dir
    from tests.evaluation.eval_support import mcq_records

    records = mcq_records()
    test_ids = {r["id"] for r in _rows(dirs["mcq"], "test")}
    leaked = [r for r in records if r.id in test_ids][:3]
    train = tmp_path / "train"
    write_dataset_dir(train, leaked + [r for r in records if r.id not in test_ids][:5], [], BuildInfo(kind="sft", builder="t", command="t"))
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    out = tmp_path / "out"
    result = invoke("eval", "--task", "mcq", "-m", tiny, "-m", copy, "--data", dirs["mcq"], "--out", out,
                    "--continuation", "option", "--no-length-norm", "--train-dir", train, "--device", "cpu")  # fmt: skip
    data = read_results(out)
    assert len(data["results"]) == 2
    a, b = (v[str(dirs["mcq"])] for v in data["results"].values())
    assert a["accuracy"] == b["accuracy"] == a["accuracy_sum"]  # the same weights give the same answers
    overlap = data["overlap"][str(dirs["mcq"])]
    assert overlap["overlapping_items"] == 3 and overlap["eval_items"] == len(test_ids)
    assert f"3 of {len(test_ids)} eval items" in result.output
    # the mcq dir's own train split holds none of its test questions
    own = invoke("eval", "--task", "mcq", "-m", tiny, "--data", dirs["mcq"], "--out", tmp_path / "own", "--train-dir", dirs["mcq"], "--max-items", "4")
    assert read_results(tmp_path / "own")["overlap"][str(dirs["mcq"])]["overlapping_items"] == 0, own.output


def _rows(path: Path, split: str) -> list[dict]:
    from medmill.schemas.dataset_dir import load_splits

    return load_splits(path)[split].to_pylist()


# --- generation / metrics -------------------------------------------------------------------------


def test_generation_cli_and_cache(tiny, dirs, tmp_path):
    out = tmp_path / "out"
    args = ("eval", "--task", "generation", "-m", tiny, "--data", dirs["kg"], "--out", out, "--max-new-tokens", "12", "--device", "cpu")
    invoke(*args)
    res = read_results(out)["results"][str(tiny)][str(dirs["kg"])]
    assert res["items"] == 5 and 0 <= res["rouge_l"] <= 1 and res["grounding_items"] == 5
    details = [json.loads(line) for line in Path(res["item_results"]).read_text(encoding="utf-8").splitlines()]
    assert len(details) == 5 and all(d["reference"].endswith("。") for d in details)
    cache = next((out / "items" / "generation").rglob("*.jsonl"))
    before = cache.read_text(encoding="utf-8")
    invoke(*args)
    assert cache.read_text(encoding="utf-8") == before and read_results(out)["results"][str(tiny)][str(dirs["kg"])]["rouge_l"] == res["rouge_l"]


# --- judge ----------------------------------------------------------------------------------------


def _answers_shown(body: dict) -> tuple[str, str]:
    text = body["messages"][-1]["content"]
    a = text.split("【回答A】")[1].split("【回答B】")[0].strip()
    b = text.split("【回答B】")[1].split("哪个回答更好")[0].strip()
    return a, b


def test_judge_both_orders_against_reference(tiny, dirs, tmp_path, llm_server):
    from medmill.evaluation.sources import dir_rows

    references = {r["messages"][-1]["content"] for r in dir_rows(dirs["kg"])[2]}

    def prefers_reference(body):
        a, b = _answers_shown(body)
        return json.dumps({"better": "A" if a in references else "B" if b in references else "tie", "rationale": "参考答案更准确"})

    llm_server.responder = prefers_reference
    out = tmp_path / "out"
    args = ("eval", "--task", "judge", "-m", tiny, "--data", dirs["kg"], "--out", out, "--max-new-tokens", "8",
            "--llm-base-url", llm_server.base_url, "--llm-model", "judge", "--device", "cpu")  # fmt: skip
    result = invoke(*args, input=None)
    res = read_results(out)["results"][str(tiny)][str(dirs["kg"])]
    assert res["opponent"] == "reference" and res["pairs"] == 5
    assert (res["wins"], res["losses"], res["ties"], res["win_rate"], res["position_consistency"]) == (0, 5, 0, 0.0, 1.0)
    assert len(llm_server.log) == 10  # each pair judged in both orders
    assert "win_rate" in result.output

    # a judge that always says "A" is pure position bias: every pair becomes a tie
    llm_server.responder = lambda body: json.dumps({"better": "A", "rationale": "A"})
    invoke(*args[:-4], "--judge-prompt", "eval_judge", "--out", tmp_path / "biased", "--llm-model", "judge2", "--device", "cpu")
    biased = read_results(tmp_path / "biased")["results"][str(tiny)][str(dirs["kg"])]
    assert (biased["ties"], biased["win_rate"], biased["position_consistency"]) == (5, 0.5, 0.0)

    sent = len(llm_server.log)
    invoke(*args)  # re-run: every verdict comes from the request cache
    assert len(llm_server.log) == sent


# --- ppl / rm -------------------------------------------------------------------------------------


def test_ppl_matches_a_direct_computation(tiny, dirs, tmp_path):
    import torch

    from medmill.evaluation.models import load_for_eval

    general = tmp_path / "general.txt"
    general.write_text("今天天气很好，我们去公园散步。\n明天可能下雨，记得带伞。\n", encoding="utf-8")
    out = tmp_path / "out"
    invoke("eval", "--task", "ppl", "-m", tiny, "--data", dirs["pt"], "--general", general, "--out", out, "--device", "cpu")
    data = read_results(out)
    res = data["results"][str(tiny)]
    domain, gen = res[str(dirs["pt"])], res[str(general)]
    assert domain["role"] == "domain" and gen["role"] == "general" and gen["texts"] == 2
    # the same number by hand: one forward pass per text, NLL of every next token (EOS appended)
    lm = load_for_eval(str(tiny), device="cpu")
    nll, tokens = 0.0, 0
    for line in general.read_text(encoding="utf-8").splitlines():
        ids = torch.tensor([lm.tokenizer(line, add_special_tokens=False)["input_ids"] + [lm.tokenizer.eos_token_id]])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].float(), -1)
        nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
        tokens += ids.shape[1] - 1
    assert gen["tokens"] == tokens
    assert gen["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    # short windows score every token once too
    invoke("eval", "--task", "ppl", "-m", tiny, "--data", general, "--out", tmp_path / "w8", "--max-length", "8", "--device", "cpu")
    assert read_results(tmp_path / "w8")["results"][str(tiny)][str(general)]["tokens"] == tokens


def test_rm_scoring_by_length_ranks_pairs_by_length(tiny, dirs, tmp_path, monkeypatch):
    import medmill.evaluation.models as models
    from medmill.evaluation.sources import dir_rows

    scorer = make_tiny_scorer(tmp_path / "rm", tiny)
    real = models.load_for_eval
    monkeypatch.setattr(models, "load_for_eval", lambda *a, **k: score_by_length(real(*a, **k)))
    out = tmp_path / "out"
    invoke("eval", "--task", "rm", "-m", scorer, "--data", dirs["pref"], "--out", out, "--device", "cpu", "--batch-size", "3")
    res = read_results(out)["results"][str(scorer)][str(dirs["pref"])]
    lm = real(str(scorer), "scorer", "cpu")
    tok = lm.tokenizer

    def length(conv):
        return len(tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False)["input_ids"])

    rows = dir_rows(dirs["pref"])[2]
    longer = [length(r["prompt"] + r["chosen"]) > length(r["prompt"] + r["rejected"]) for r in rows]
    assert 0 < sum(longer) < len(rows)
    assert res["pairs"] == len(rows) and res["accuracy"] == sum(longer) / len(rows)
    for kind, got in res["by_perturbation"].items():
        part = [lg for r, lg in zip(rows, longer, strict=True) if r["meta"]["perturbation"] == kind]
        assert got["pairs"] == len(part) and got["accuracy"] == sum(part) / len(part)


# --- errors ---------------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_errors(tiny, dirs, tmp_path):
    import subprocess
    import sys

    from medmill.schemas.errors import MedmillError

    r = subprocess.run([sys.executable, "-m", "medmill.cli", "eval", "--task", "mcq", "-m", str(tiny), "--data", str(tmp_path / "missing.csv"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr

    def error(*args) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert isinstance(result.exception, MedmillError), result.output  # main() prints it on one line, exit 2
        return str(result.exception)

    assert "holds sft records" in error("eval", "--task", "rm", "-m", tiny, "--data", dirs["mcq"], "--out", tmp_path / "o")
    assert "no such directory" in error("eval", "--task", "mcq", "-m", tmp_path / "nomodel", "--data", dirs["mcq"], "--out", tmp_path / "o")
    assert "--llm-model" in error("eval", "--task", "judge", "-m", tiny, "--data", dirs["kg"], "--out", tmp_path / "o")
    assert "given twice" in error("eval", "--task", "ppl", "-m", tiny, "--data", dirs["pt"], "--general", dirs["pt"], "--out", tmp_path / "o")
    assert "KEY=COLUMN" in error("eval", "--task", "mcq", "-m", tiny, "--data", dirs["mcq"], "--out", tmp_path / "o", "--column", "stem")
    assert "has no 'nope' split" in error("eval", "--task", "ppl", "-m", tiny, "--data", dirs["pt"], "--split", "nope", "--out", tmp_path / "o")


# --- chat -----------------------------------------------------------------------------------------


def test_chat_driven_through_stdin(tiny):
    script = "头痛怎么办\n/system 你是一名医生\n发热吃什么药\n/reset\n/oops\n咳嗽\n/exit\n没读到这里\n"
    result = invoke("chat", "-m", tiny, "--temperature", "0", "--max-new-tokens", "6", "--device", "cpu", input=script)
    out = result.output
    assert out.count("模型> ") == 3
    assert "[system prompt set]" in out and "[history cleared]" in out and "[unknown command /oops]" in out


def test_chat_streams_the_greedy_answer_and_trims_history(tiny):
    from medmill.evaluation.chat import ChatSession
    from medmill.evaluation.lm import generate
    from medmill.evaluation.models import load_for_eval

    lm = force_letter(load_for_eval(str(tiny), device="cpu"), "病")  # an untrained tiny model says nothing
    session = ChatSession(lm, system="你是一名医生", max_new_tokens=6, temperature=0)
    pieces: list[str] = []
    answer = session.reply("头痛怎么办", pieces.append)
    assert answer == "病" * 6 and len(pieces) >= 3  # streamed as it came, not in one piece at the end
    assert answer == generate(lm, [[{"role": "system", "content": "你是一名医生"}, {"role": "user", "content": "头痛怎么办"}]], 6, 1)[0]
    lm.tokenizer.model_max_length = 48  # a tiny context: old turns must go
    for i in range(6):
        session.reply(f"第{i}个问题：发热吃什么药？", lambda s: None)
        assert len(session.prompt_ids()) <= 48 - 6
    assert session.trimmed_turns > 0 and session.messages()[0]["role"] == "system"
    assert session.history[-1]["role"] == "assistant"


# --- the loop on CPU ------------------------------------------------------------------------------


def test_loop_train_sft_then_eval_before_after(dirs, tmp_path):
    """init-model -> train sft on an mcq dir's train split -> eval mcq on its held-out split, before and
    after, side by side -> eval ppl on the held-out questions and on general text."""
    model, sft = tmp_path / "base", tmp_path / "sft"
    invoke("init-model", "--out", model, "--corpus", dirs["mcq"], "--corpus", dirs["pt"])
    train = invoke("train", "sft", "--model", model, "--data", dirs["mcq"], "--out", sft, "--no-preview",
                   "--max_steps", "40", "--learning_rate", "5e-3", "--per_device_train_batch_size", "8",
                   "--max_length", "128", "--logging_steps", "5", "--save_steps", "1000", "--dataloader_num_workers", "0")  # fmt: skip
    assert "medmill train sft" in train.output
    out = tmp_path / "eval_mcq"
    result = invoke("eval", "--task", "mcq", "-m", model, "-m", sft, "--data", dirs["mcq"], "--out", out,
                    "--train-dir", dirs["mcq"], "--device", "cpu")  # fmt: skip
    res = read_results(out)
    before, after = (res["results"][str(m)][str(dirs["mcq"])] for m in (model, sft))
    n = len(_rows(dirs["mcq"], "test"))
    assert before["items"] == after["items"] == n and 0 <= after["accuracy"] <= 1
    overlap = res["overlap"][str(dirs["mcq"])]  # templated questions: near-copies across splits are expected
    assert overlap["eval_items"] == n and overlap["overlapping_items"] == len(overlap["overlapping_keys"])
    assert "accuracy" in result.output and "base" in result.output and "sft" in result.output
    general = tmp_path / "general.txt"
    general.write_text("今天天气很好，我们去公园散步。\n明天可能下雨，记得带伞。\n", encoding="utf-8")
    invoke("eval", "--task", "ppl", "-m", model, "-m", sft, "--data", dirs["mcq"], "--general", general, "--out", tmp_path / "eval_ppl")
    ppl = read_results(tmp_path / "eval_ppl")["results"]
    domain_before, domain_after = (ppl[str(m)][str(dirs["mcq"])]["perplexity"] for m in (model, sft))
    # trained on questions of the same templates, the held-out ones get far likelier
    assert domain_after < domain_before
    assert all(math.isfinite(ppl[str(m)][str(general)]["perplexity"]) for m in (model, sft))


def test_lora_adapter_dirs_load_merged(tiny, tmp_path):
    """A LoRA checkpoint (adapter_config.json) loads on its base and merges; a fresh adapter (B = 0)
    scores exactly like its base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medmill.evaluation.lm import continuation_logprobs
    from medmill.evaluation.models import load_for_eval

    adapter = tmp_path / "adapter"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(adapter)
    merged, base = load_for_eval(str(adapter), device="cpu"), load_for_eval(str(tiny), device="cpu")
    assert not hasattr(merged.model, "peft_config")
    pairs = [("头痛怎么办？", "多休息"), ("发热", "对乙酰氨基酚")]
    a, b = continuation_logprobs(merged, pairs, 2), continuation_logprobs(base, pairs, 2)
    assert [x.tokens for x in a] == [x.tokens for x in b]
    assert torch.allclose(torch.tensor([x.logprob for x in a]), torch.tensor([x.logprob for x in b]), atol=1e-4)


def test_shared_context_scores_equal_separate_sequences(tiny):
    """One forward pass per context for one-token continuations gives the same log-probs as one
    sequence per candidate."""
    from medmill.evaluation.lm import continuation_logprobs
    from medmill.evaluation.models import load_for_eval, render_prompt

    lm = load_for_eval(str(tiny), device="cpu")
    ctx = [render_prompt(lm.tokenizer, [{"role": "user", "content": q}]) for q in ("头痛吃什么药？\nA. 布洛芬\nB. 青霉素", "发热？")]
    pairs = [(c, x) for c in ctx for x in ("A", "B", "AB", "布洛芬退热")]
    shared = continuation_logprobs(lm, pairs, 3)
    separate = continuation_logprobs(lm, pairs, 2, share_context=False)
    assert [s.tokens for s in shared] == [s.tokens for s in separate] and shared[0].tokens == 1
    assert [s.logprob for s in shared] == pytest.approx([s.logprob for s in separate], abs=1e-4)
