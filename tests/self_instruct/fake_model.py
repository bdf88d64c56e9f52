"""A deterministic fake self-instruct model for tests, and a small seed file in MedicalGPT-zh's shape."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

SEEDS = [
    ("病因分析", "公公肺癌晚期今天鼻子出了好多血怎么回事？", "流鼻血可能与肿瘤侵犯血管或凝血功能下降有关，建议尽快到医院检查血常规和凝血功能。"),
    ("用药建议", "孩子三岁发烧三十九度，可以吃布洛芬混悬液吗？吃多少合适？", "三岁儿童可以使用布洛芬混悬液退热，剂量按体重计算，两次用药间隔至少六小时。"),
    ("治疗方案", "右肺中叶中央型肺癌并肺不张，身体差不能接受化疗，还有什么办法？", "可以考虑靶向治疗、免疫治疗或局部放疗等方案，需要结合基因检测结果由肿瘤科医生评估。"),
    ("病情诊断", "最近一个月总是口渴，喝水很多，小便也多，体重还下降了，是什么病？", "这些表现提示糖尿病的可能，建议尽快检查空腹血糖和糖化血红蛋白明确诊断。"),
    ("给出营养建议", "痛风病人平时饮食要注意什么？", "痛风患者应低嘌呤饮食，少吃动物内脏、海鲜和浓肉汤，戒酒，多饮水。"),
]

_WHO = ["我今年三十五岁", "我母亲六十八岁", "孩子刚满两岁", "我爸爸七十岁", "我怀孕二十周", "我是一名大学生", "我丈夫四十二岁",
        "奶奶八十多岁了", "女儿今年十四岁", "我五十岁绝经两年"]
_PARTS = ["早上起床后头晕得厉害", "饭后胃部隐隐作痛", "晚上咳嗽加重痰多发黄", "膝关节上下楼梯时疼", "体检发现转氨酶偏高",
          "最近总是心慌胸闷", "手脚发麻持续一周", "皮肤出现成片红疹发痒", "小便时有灼热感", "眼睛干涩视物模糊",
          "血压波动在一百五左右", "夜里睡不着容易惊醒", "大便带血已经三天", "耳鸣像蝉叫一样", "腰部酸痛不能久坐",
          "甲状腺彩超提示结节", "吃海鲜后腹泻两次", "爬楼梯就气短", "牙龈经常出血", "颈部摸到一个小包块",
          "月经推迟快两个月", "尿酸化验结果偏高", "口腔溃疡反复发作", "低烧持续了五天", "脚踝肿胀按下去有坑"]
_ASK = ["请问需要做什么检查", "这种情况严重吗", "应该挂哪个科", "平时要注意什么", "能吃什么药缓解", "会不会是大病"]


def parse_request(body: dict) -> tuple[str, int, int, str]:
    prompt = body["messages"][-1]["content"]
    category = re.search(r"任务类别是“(.+?)”", prompt).group(1)
    k = int(re.search(r"请编写 (\d+) 个", prompt).group(1))
    turns_m = re.search(r"每个对话恰好 (\d+) 轮", prompt)
    return category, k, int(turns_m.group(1)) if turns_m else 1, prompt


def self_instruct_model(body: dict) -> str:
    """K tasks per request, from a seeded pick of parts; the second task of every third request is a
    near-copy of the first seed (so novelty rejections happen), and one answer in English."""
    category, k, turns, prompt = parse_request(body)
    digest = hashlib.sha256(json.dumps(body["messages"], ensure_ascii=False).encode()).hexdigest()
    rng = random.Random(digest)
    tasks = []
    for i in range(k):
        exchanges = []
        for t in range(turns):
            parts = rng.sample(_PARTS, 3)
            question = f"{rng.choice(_WHO)}，{'，'.join(parts)}，{rng.choice(_ASK)}？" if t == 0 else \
                f"那如果{parts[0]}，还需要{rng.choice(_ASK)}？"
            answer = f"关于{category}：{parts[0]}需要结合病史判断，建议先到医院就诊完善相关检查，再根据结果处理。"
            exchanges.append({"patient": question, "doctor": answer})
        if i == 1 and int(digest[:4], 16) % 3 == 0:
            exchanges[0]["patient"] = SEEDS[0][1] + "？"
        tasks.append({"turns": exchanges})
    return json.dumps({"tasks": tasks}, ensure_ascii=False)


def write_seeds(path: Path) -> Path:
    """MedicalGPT-zh dialogue_seed_task.json layout: a hand-formatted JSON array, one record with `original`."""
    records = [{"instruction": c, "input": q, "output": a} for c, q, a in SEEDS]
    records[0] = {"original": "1. 指令: 病因分析\n1. 输入:\n…", **records[0]}
    text = "[\n" + ",\n".join("    " + json.dumps(r, ensure_ascii=False).replace('", "', '", \n        "') for r in records)
    path.write_text(text + "\n\n]\n", encoding="utf-8")
    return path
