"""Hand-made eval data written by medmill's own writer (the dataset-dir contract), a tiny init-model
checkpoint, and models forced to a known behaviour (always answer A, score by length)."""

from __future__ import annotations

import json
from pathlib import Path

from medmill.schemas import Message, PreferenceRecord, PretrainRecord, SFTRecord, Source

DISEASES = ["感冒", "高血压", "糖尿病", "肺炎", "胃炎", "哮喘", "贫血", "痛风", "肝炎", "肾炎"]
SYMPTOMS = ["发热", "头痛", "多饮", "咳嗽", "腹痛", "喘息", "乏力", "关节痛", "黄疸", "水肿"]
DRUGS = ["对乙酰氨基酚", "氨氯地平", "二甲双胍", "阿莫西林", "奥美拉唑", "沙丁胺醇", "硫酸亚铁", "秋水仙碱", "恩替卡韦", "泼尼松"]
# answer keys cycle through this list: 4 of 10 are exactly "A" (one multi-answer "AC" is not)
KEYS = ["A", "B", "C", "A", "D", "AC", "A", "B", "BD", "A"]


def mcq_records(n: int = 40) -> list[SFTRecord]:
    """build-tasks mcq contract: user = stem + option lines, assistant = the answer, meta with the key."""
    out = []
    for i in range(n):
        d = i % len(DISEASES)
        key = KEYS[i % len(KEYS)]
        category = "症状" if i % 2 == 0 else "治疗"
        pool = SYMPTOMS if category == "症状" else DRUGS
        right = pool[d]
        wrong = [pool[(d + k) % len(pool)] for k in (1, 2, 3, 4)]
        options = {}
        for letter in "ABCD":
            options[letter] = right if letter in key else wrong.pop()
        if len(key) > 1:  # a second right answer: use the other pool's value
            options[key[1]] = (DRUGS if category == "症状" else SYMPTOMS)[d]
        stem = f"{DISEASES[d]}的{'典型症状' if category == '症状' else '常用药物'}是？（第{i}题）"
        user = stem + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
        msgs = [Message(role="user", content=user), Message(role="assistant", content=key)]
        meta = {"task": "mcq", "question": stem, "options": options, "answer": key, "category": category}
        out.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(group=f"q{i}", builder="test"), meta=meta))
    return out


def _write(path: Path, records, kind: str, test_every: int = 4, is_test=None) -> Path:
    from medmill.builders.core.writer import BuildInfo, write_dataset_dir

    is_test = is_test or (lambda i: i % test_every == 0)
    fixed = {r.id: ("test" if is_test(i) else "train") for i, r in enumerate(records)}
    write_dataset_dir(path, records, [], BuildInfo(kind=kind, builder="test", command="test", fixed_splits=fixed))
    return path


def write_mcq_dir(path: Path, n: int = 40) -> Path:
    # 17 of 40 held out, both categories, keys A A AC BD ... plus one B: 8 of 17 are exactly "A"
    return _write(path, mcq_records(n), "sft", is_test=lambda i: i % 5 in (0, 3) or i == 1)


def write_kg_sft_dir(path: Path) -> Path:
    """kg-qa-like records: answers stating KG values, meta `values` as the builder writes it."""
    records = []
    for i, d in enumerate(DISEASES * 2):
        values = {"症状": [SYMPTOMS[i % 10], SYMPTOMS[(i + 3) % 10]]}
        answer = f"{d}的常见症状有{values['症状'][0]}和{values['症状'][1]}。"
        msgs = [Message(role="user", content=f"{d}有哪些症状？{i}"), Message(role="assistant", content=answer)]
        meta = {"builder": "kg_qa", "entity": d, "relations": ["症状"], "values": values}
        records.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(group=f"e{i}", builder="test"), meta=meta))
    return _write(path, records, "sft")


def write_pref_dir(path: Path) -> Path:
    """Corrupt-style pairs; in some the chosen answer is the longer one, in others the shorter."""
    records = []
    kinds = ["truncate", "unsafe_advice", "dose_change"]
    for i, d in enumerate(DISEASES * 2):
        long = f"{d}患者应按时服药，定期复查，注意饮食和休息，如症状加重请及时就医。"
        short = f"{d}不用管。"
        chosen, rejected = (long, short) if i % 3 else (short, long)
        records.append(
            PreferenceRecord(
                id=f"p{i}",
                prompt=[Message(role="user", content=f"{d}怎么办？{i}")],
                chosen=[Message(role="assistant", content=chosen)],
                rejected=[Message(role="assistant", content=rejected)],
                source=Source(group=f"p{i}", builder="test"),
                meta={"strategy": "corrupt", "perturbation": kinds[i % 3]},
            )
        )
    return _write(path, records, "preference", test_every=2)


def write_pt_dir(path: Path) -> Path:
    texts = [f"{d}的主要症状是{s}，常用药物为{g}。患者应定期复查。" for d, s, g in zip(DISEASES, SYMPTOMS, DRUGS, strict=True)]
    records = [PretrainRecord(id=f"t{i}", text=t * 2, source=Source(group=f"t{i}", builder="test")) for i, t in enumerate(texts * 2)]
    return _write(path, records, "pretrain")


def make_tiny(out: Path, corpus: list[Path]) -> Path:
    from medmill.trainers.init_model import init_model

    init_model(out, corpus=corpus, size="tiny")
    return out


def make_tiny_scorer(out: Path, tiny: Path) -> Path:
    """A one-label sequence classifier with the tiny model's tokenizer (the reward-model format)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny, num_labels=1)
    model = AutoModelForSequenceClassification.from_config(config)
    model.config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    return out


class ForwardCounter:
    def __init__(self) -> None:
        self.calls = 0  # forward passes
        self.loads = 0  # models loaded


def force_letter(lm, letter: str = "A", counter: ForwardCounter | None = None):
    """Make a loaded causal LM put (almost) all probability on the one-token text `letter` at every position."""
    ids = lm.tokenizer(letter, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 and lm.tokenizer.decode(ids) == letter
    token = ids[0]

    def hook(_module, _inputs, output):
        if counter is not None:
            counter.calls += 1
        output = output.clone()
        output[..., token] += 1e4
        return output

    lm.model.lm_head.register_forward_hook(hook)
    if counter is not None:
        counter.loads += 1
    return lm


def score_by_length(lm):
    """Make a loaded scorer's logit at each position equal to that position: the pooled score of a
    sequence is then its last real token's index, i.e. its length in tokens minus one."""
    import torch

    def hook(_module, _inputs, output):
        positions = torch.arange(output.shape[1], dtype=output.dtype, device=output.device)
        return positions[None, :, None].expand_as(output).clone()

    lm.model.score.register_forward_hook(hook)
    return lm


def read_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))
