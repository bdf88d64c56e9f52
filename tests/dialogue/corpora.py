"""Generated dialogue files with the shapes of the real corpora (formats.md §1, §4, §5, §7), at any size.

The real files are 5k–800k rows; the samples in ../shared/samples are their heads. These writers make
files of the same byte-level shape (GBK + quoted multi-line cells for Toyhom, CRLF + 6-space indent for
GenMedGPT-5k, JSON Lines in a .json for Huatuo, one-line array with prefix copies for BenTsao) so
readers and the whole command can be tested and benchmarked at full size. Used by tests and bench/.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DEPARTMENTS = ["心血管科", "消化科", "神经科", "内分泌科", "肝病科", "呼吸科", "肾内科", "感染科"]
DISEASES = ["高血压", "糖尿病", "胃炎", "癫痫", "脂肪肝", "肺炎", "肾结石", "乙肝", "偏头痛", "冠心病"]
OPENERS = ["您好，", "你好，根据你的叙述，", "", "", "亲爱的咨询者您好，"]
SIGNOFFS = ["感谢您的进行咨询，期望我的解释对你有所帮助。", "以上可以做为参考。", "祝您早日康复！", "", ""]


WORDS = (
    "头痛 发热 咳嗽 乏力 失眠 胸闷 心慌 腹泻 便秘 恶心 呕吐 腰酸 关节痛 皮疹 瘙痒 耳鸣 视力模糊 口干 多尿 水肿 "
    "血压 血糖 血脂 肝功能 肾功能 尿酸 甲状腺 心电图 彩超 胃镜 核磁共振 血常规 尿常规 转氨酶 胆固醇 "
    "高血压 糖尿病 胃炎 癫痫 脂肪肝 肺炎 肾结石 乙肝 偏头痛 冠心病 痛风 哮喘 贫血 颈椎病 结肠炎 "
    "党参 阿胶 枸杞 黑米 二甲双胍 阿司匹林 布洛芬 奥美拉唑 硝苯地平 胰岛素 头孢 维生素 钙片 "
    "最近 一直 偶尔 早上 晚上 饭后 运动后 已经 三天 一周 半年 多年 反复 加重 缓解 "
    "建议 注意 饮食 清淡 低盐 低脂 规律 作息 按时 服药 复查 就医 检查 观察 控制 体重 戒烟 限酒 锻炼 "
    "可能 考虑 引起 导致 属于 常见 需要 及时 明确 诊断 治疗 方案 药物 剂量 副作用 医生 指导"
).split()


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(lo, hi))
    parts, out = [], []
    for w in words:
        out.append(w)
        if rng.random() < 0.2:
            parts.append("".join(out))
            out = []
    parts.append("".join(out))
    return "，".join(p for p in parts if p)


def _question(rng: random.Random, i: int) -> tuple[str, str]:
    title = _sentence(rng, 3, 6) + "怎么办？"
    ask = _sentence(rng, 12, 30) + "，请问医生" + title
    return title, ask


def _answer(rng: random.Random, i: int, multiline: bool) -> str:
    body = _sentence(rng, 25, 70)
    if multiline:
        body += "。\n治疗原则：\u3000\u3000一、" + _sentence(rng, 4, 8) + "，二、" + _sentence(rng, 4, 8)
    return rng.choice(OPENERS) + body + "。" + rng.choice(SIGNOFFS)


def write_toyhom_csv(path: Path, rows: int, *, seed: int = 0, ragged_every: int = 0, duplicate_every: int = 0) -> dict[str, int]:
    """A Toyhom CSV in gb18030: header department,title,ask,answer; every 7th answer quoted and
    multi-line, every 50th ask 无 (the title is the question), every 11th row with a comma in the ask
    (quoted); `ragged_every` > 0 adds a row with a missing cell that often, `duplicate_every` > 0 repeats
    the previous row that often (the real sample has 378 exact duplicates in 7,645 rows). Returns what it wrote."""
    rng = random.Random(seed)
    counts = {"rows": 0, "no_ask": 0, "ragged": 0, "multiline": 0, "duplicates": 0}
    previous: list[str] | None = None
    with open(path, "w", encoding="gb18030", newline="") as f:
        f.write("department,title,ask,answer\n")
        for i in range(rows):
            title, ask = _question(rng, i)
            if i % 50 == 0:
                ask = "无"
                counts["no_ask"] += 1
            multiline = i % 7 == 3
            answer = _answer(rng, i, multiline)
            counts["multiline"] += multiline
            cells = [rng.choice(DEPARTMENTS), title, ask.replace("，", ",") if i % 11 == 5 else ask, answer]
            if ragged_every and i % ragged_every == ragged_every - 1:
                cells = cells[:3]
                counts["ragged"] += 1
            elif duplicate_every and previous and i % duplicate_every == duplicate_every - 1:
                cells = previous
                counts["duplicates"] += 1
            previous = cells
            f.write(",".join(_csv_cell(c) for c in cells) + "\n")
            counts["rows"] += 1
    return counts


def _csv_cell(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_toyhom_txt(path: Path, blocks: int, *, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="gb18030", newline="") as f:
        for i in range(blocks):
            title, ask = _question(rng, i)
            f.write(f"{title},{ask}\n{_answer(rng, i, False)}\n\n\n")


def write_genmedgpt(path: Path, rows: int, *, seed: int = 0) -> None:
    """GenMedGPT-5k / HealthCareMagic shape: JSON array, CRLF, 6-space indent, one shared instruction."""
    rng = random.Random(seed)
    items = []
    for i in range(rows):
        symptom = rng.choice(["headaches", "a sore throat", "back pain", "dizziness", "a rash"])
        items.append({
            "instruction": "If you are a doctor, please answer the medical questions based on the patient's description.",
            "input": f"Doctor, I have had {symptom} for {i % 30 + 1} days (case {i}). What should I do?",
            "output": f"Hi, thanks for the query. Based on your symptoms (case {i}), we should run some tests "
                      f"for {symptom}. Take care.",
        })
    text = json.dumps(items, ensure_ascii=False, indent=6)
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))


def write_huatuo_jsonl(path: Path, rows: int, *, seed: int = 0) -> None:
    """Huatuo llama_data shape: JSON Lines in a .json file, `input` always empty."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            d = rng.choice(DISEASES)
            rec = {"instruction": f"{d}患者第{i}例出现并发症，应如何治疗？", "input": "",
                   "output": f"第{i}例{d}并发症应积极控制原发病，对症治疗，必要时住院观察。"}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def bentsao_conversation(i: int, turns: int) -> list[tuple[str, str]]:
    out = []
    for k in range(turns):
        out.append(("user", f"关于肝癌研究{i}的第{k + 1}个问题：这个指标和预后有什么关系？"))
        out.append(("assistant", f"研究{i}表明第{k + 1}项指标高表达与较差的预后相关，可作为潜在的诊疗指标。"))
    return out


def flatten(turns: list[tuple[str, str]]) -> tuple[str, str]:
    """BenTsao's flattening: ' <user>: q1 <bot>: a1 <user>: q2' as instruction, the last answer as output."""
    history = "".join(f" <{'user' if r == 'user' else 'bot'}>: {t}" for r, t in turns[:-1])
    return history, turns[-1][1]


def write_bentsao(path: Path, conversations: int, *, max_turns: int = 4, seed: int = 0) -> int:
    """liver_cancer.json shape: one-line JSON array; every conversation of k turns appears with all its
    k prefix expansions (turn 1, turns 1-2, …), some with an `id`. Returns the number of records."""
    rng = random.Random(seed)
    items = []
    for i in range(conversations):
        turns = bentsao_conversation(i, rng.randint(1, max_turns))
        for k in range(1, len(turns) // 2 + 1):
            instruction, output = flatten(turns[: 2 * k])
            rec = {"instruction": instruction, "output": output}
            if i % 5 == 0:
                rec["id"] = i
            rec["input"] = ""
            items.append(rec)
    rng.shuffle(items)
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return len(items)
