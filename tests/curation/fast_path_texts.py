"""Adversarial texts for the curation fast paths: each fast path (a cheap pre-check that skips a rule,
a batch normaliser) is compared with the plain rule on these. Fragments that trip each rule, in
ASCII, fullwidth and other-script spellings, glued together with Chinese filler; plus character fuzz
over each rule's own alphabet."""

from __future__ import annotations

import random

FILLER = ["患者", "头痛三天", "，", "。", "复查血常规", "遵医嘱服药", " ", "\n", "　", "：", "是", "为", "mg", "Ab", "天", "岁"]

PII = [
    "13812345678", "138-1234-5678", "138 1234 5678", "138.1234.5678", "+86 138 1234 5678", "+8613812345678", "8613812345678",
    "(0571)88888888", "（0571）8888-8888", "010-88888888", "021 6888 8888", "0571.8888.8888", "电话057188888888",
    "tel:02188889999", "TEL 057188888888", "致电：0105555666", "13812345678转123", "138-1234-5678-12",
    "11010519491231002X", "110105 19491231 002X", "110105194912310021", "11010519491331002X", "110105 19491231002X",
    "6222021234567890128", "6222 0212 3456 7890 128", "4111111111111111", "4111-1111-1111-1111", "订单号6222021234567890128",
    "a.b@ex.com", "x_y+z@mail.example.org", "ｍｅ＠ｅｘ．ｃｏｍ", "@@", "a@b", "www.example.com", "WWW.EX.CN/a?b=1",
    "https://x.cn/a.", "HTTPS://Ex.com/path)", "ftp://1.2.3.4/f", "ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ", "ｈｔｔｐｓ://a.b",
    "192.168.1.10", "10.0.0.1", "ip:10.0.0.1", "IP地址 8.8.8.8", "服务器1.2.3.4", "3.1.1.2", "1.1.1.1.1", "256.1.1.1",
    "住院号：A123456", "住院号是123", "病历号 12345678", "患者ID:AB-123456", "患者id 12345", "病人Id：9876543", "床号12",
    "门诊号 123 456 789", "医保卡号12345678901234", "１３８１２３４５６７８", "١٣٨١٢٣٤٥٦٧٨", "१३८१२३४५६७८", "138‐1234‐5678",
    "138—1234—5678", "0.5mg", "2020.1.2", "12.5", "3.14159", "1234", "12345", "123456", "1234567890", "12345678901234567890",
    "2023年12月01日", "血压120/80", "WBC 12.3×10^9/L", "批号 6222021234567890128", "样本：110105194912310021",
]
PII_ALPHABET = "0123456789０１２３٣ .-－．@＠:/wWｗＷhtpsfHTPS住院号患者IDid电话ipIP中，。\n\t\u3000()（）+转x"

QUALITY = [
    "您好，", "你好！", "Hello, ", "hi there, ", "thank you for asking about this. ", "感谢您的咨询。", "祝您早日康复！",
    "希望我的回答对您有帮助", "以上仅供参考。", "Regards, Dr. Smith", "hope this helps!", "chatdoctor.", "take care.",
    "作为一个AI语言模型", "我是人工智能助手", "As an AI language model", "我是由OpenAI", "作为智能助手",
    "无", "暂无", "N/A", "...", "？", "test", "0", "锟斤拷", "烫烫烫", "Ã©", "â€™", "\\xe4\\xbd", "\ufffd", "\ue000", "\x07",
    "ï»¿", "屯屯屯", "哈哈哈哈哈哈哈哈哈哈哈哈", "多喝水多休息" * 8, "哈" * 40, "abcdefghij" * 4, "同一行\n同一行\n同一行\n", "\n\n", "　", "ABC abc", "ＡＢＣ",
]
QUALITY_ALPHABET = "ab哈哈嘿。，！ \n\t锟斤拷烫屯ÃÂ©€™\\x8f\ufffd\ue001\x01ï»¿您好祝作为AI"

SAFETY = [
    "怎么自杀", "如何自杀干预", "自杀方法评估", "哪里买冰毒", "冰毒", "性激素", "淫羊藿", "色情", "ＨＯＷ ＴＯ ＫＩＬＬ ＭＹＳＥＬＦ",
    "How To Kill Myself", "ﬁ", "㎏", "①", "Å", "Å", "é", "ΣΑΣ", "İ", "ǅ", "ß", "ﬀ", "…", "\u200b", "\u3000", "〸",
]
SAFETY_ALPHABET = "自杀怎么如何方法冰毒买哪里性激素淫羊藿ＡａAaΣσς\u0301e\u0308\u3099か\uff9eｶﾞ 。，！？\n"


def texts(seed: int, n: int, fragments: list[str], alphabet: str) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 2:  # character fuzz over the rule's alphabet
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))
            continue
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(fragments) if rng.random() < 0.5 else rng.choice(FILLER))
        out.append("".join(parts))
    return out
