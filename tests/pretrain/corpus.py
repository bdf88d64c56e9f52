"""Small synthetic Chinese corpora for build-pt tests: varied sentences (no two documents near-duplicates)."""

from __future__ import annotations

import random
from pathlib import Path

MEDICAL = ["高血压", "糖尿病", "冠心病", "哮喘", "肺炎", "胃炎", "肝硬化", "肾衰竭", "痛风", "贫血", "甲亢", "偏头痛"]
GENERAL = ["城市", "河流", "铁路", "农业", "天气", "音乐", "历史", "学校", "工厂", "市场", "森林", "港口"]
VERBS = ["影响", "改变", "促进", "限制", "决定", "反映", "推动", "减少", "增加", "维持"]
OBJECTS = ["生活质量", "发展速度", "长期结果", "日常安排", "整体水平", "主要特点", "基本结构", "变化趋势"]
ADVERBS = ["明显", "逐渐", "持续", "显著", "缓慢", "迅速", "稳定", "间接"]
TAILS = ["需要长期观察", "值得进一步研究", "与多种因素有关", "在不同地区差异较大", "近年来受到重视", "应当综合评估"]


def sentence(rng: random.Random, topics: list[str]) -> str:
    a, b = rng.sample(topics, 2)
    return f"{a}{rng.choice(ADVERBS)}{rng.choice(VERBS)}{b}的{rng.choice(OBJECTS)}，{rng.choice(TAILS)}，第{rng.randint(1, 999)}例记录显示{rng.choice(OBJECTS)}{rng.choice(VERBS)}。"


def write_corpus(path: Path, docs: int, topics: list[str], seed: int, sentences: tuple[int, int] = (3, 12)) -> Path:
    """JSON Lines of `docs` documents with a text field."""
    import json

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(docs):
            text = "".join(sentence(rng, topics) for _ in range(rng.randint(*sentences)))
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path
