"""PII detectors: precision and recall per type on a labelled set this script writes (seeded).

Positives sit inside Chinese clinical prose (valid resident IDs with checksum and birth date,
mobiles and landlines in several spellings, emails, URLs, IPs, Luhn-valid bank cards, 住院号/病历号);
negatives are what medical text is full of: dosages, dates, times, lab values, blood pressure,
prices, order numbers, version strings, IDs with a wrong check digit or impossible date, cards that
fail Luhn, 11-digit numbers that are not mobiles. Also prints throughput.

    python bench/pii.py [--per-type 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from medmill.builders.curation.pii import PIIScanner

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"
AREAS = ["110105", "310104", "440305", "330106", "510107", "420106", "320102", "610113", "370202", "210102"]
PROSE = [
    "患者自述{}，要求复诊时联系。", "家属留下的信息是{}，请核对。", "{}（已登记），明日上午复查血常规。",
    "门诊记录：{}，主诉头痛三天。", "如有不适请及时就医，{}。", "出院小结附：{}；遵医嘱服药。",
]


def resident_id(rng: random.Random, valid: bool = True) -> str:
    year, month, day = rng.randint(1930, 2015), rng.randint(1, 12), rng.randint(1, 28)
    body = f"{rng.choice(AREAS)}{year}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    check = CHECK[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def bad_date_id(rng: random.Random) -> str:
    body = f"{rng.choice(AREAS)}{rng.randint(1950, 2000)}{rng.choice(['13', '00'])}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + CHECK[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def bank_card(rng: random.Random, valid: bool = True) -> str:
    length = rng.choice((16, 16, 19))
    prefix = rng.choice(("62", "4", "5"))
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - 1 - len(prefix)))
    digit = luhn_digit(body)
    if not valid:
        digit = str((int(digit) + rng.randint(1, 9)) % 10)
    number = body + digit
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if rng.random() < 0.3 else number


def mobile(rng: random.Random) -> str:
    n = rng.choice("3456789") + "".join(str(rng.randint(0, 9)) for _ in range(9))
    number = "1" + n
    style = rng.random()
    if style < 0.2:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if style < 0.3:
        return f"+86 {number}"
    return number


def landline(rng: random.Random) -> str:
    area = rng.choice(["010", "021", "0571", "020", "0755", "028"])
    local = str(rng.randint(2, 8)) + "".join(str(rng.randint(0, 9)) for _ in range(7 if len(area) == 3 else 6))
    return rng.choice([f"{area}-{local}", f"({area}){local}", f"{area}{local}"])


def positives(rng: random.Random) -> dict[str, callable]:
    return {
        "ID_CARD": lambda: ("身份证号" + (v := resident_id(rng)), v),
        "PHONE": lambda: ("联系电话" + (v := rng.choice([mobile, mobile, landline])(rng)), v),
        "EMAIL": lambda: ("邮箱" + (v := f"{rng.choice(['zhang.wei', 'li_na', 'doctor.wang', 'pt2023'])}{rng.randint(1, 999)}@{rng.choice(['163.com', 'qq.com', 'hospital.org.cn', 'example.com'])}"), v),
        "URL": lambda: ("详见" + (v := f"https://www.{rng.choice(['haodf', 'dxy', 'example'])}.com/{rng.choice(['a', 'doc', 'q'])}/{rng.randint(1, 99999)}"), v),
        "IP": lambda: (rng.choice(["登录地址", "请求来自", "访问者 "]) + (v := ".".join(str(rng.randint(1, 254)) for _ in range(4))), v),
        "BANK_CARD": lambda: ("缴费卡号" + (v := bank_card(rng)), v),
        "PATIENT_ID": lambda: (rng.choice(["住院号：", "病历号", "门诊号 ", "病案号为"]) + (v := rng.choice(["", "ZY", "A"]) + str(rng.randint(100000, 99999999))), v),
    }


def negatives(rng: random.Random) -> list[callable]:
    return [
        lambda: f"每次{rng.choice([5, 10, 20, 250, 500])}mg，每日{rng.randint(1, 3)}次，连服{rng.randint(3, 14)}天",
        lambda: f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}复查，{rng.randint(2015, 2024)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日出院",
        lambda: f"血压{rng.randint(100, 180)}/{rng.randint(60, 110)}mmHg，心率{rng.randint(50, 120)}次/分",
        lambda: f"白细胞{rng.randint(3, 15)}.{rng.randint(0, 9)}×10^9/L，血红蛋白{rng.randint(80, 160)}g/L",
        lambda: f"于{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}测体温{rng.randint(36, 40)}.{rng.randint(0, 9)}℃",
        lambda: f"订单号{rng.randint(10**17, 10**18 - 1)}已支付{rng.randint(10, 999)}.{rng.randint(0, 99):02d}元",
        lambda: f"软件版本{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        lambda: f"证件号{resident_id(rng, valid=False)}有误",
        lambda: f"编号{bad_date_id(rng)}不是有效证件",
        lambda: f"卡号{bank_card(rng, valid=False)}校验失败",
        lambda: f"样本编号{rng.choice('02')}{rng.randint(10**9, 10**10 - 1)}",
        lambda: f"体重{rng.randint(40, 100)}.{rng.randint(0, 9)}kg，身高1.{rng.randint(50, 90)}m，BMI {rng.randint(18, 32)}.{rng.randint(0, 9)}",
        lambda: f"住院{rng.randint(3, 30)}天，床位费{rng.randint(50, 300)}元/天",
        lambda: f"ISBN 978-7-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}",
        lambda: f"{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)} 时行感冒 因感受时邪所致",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-type", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    gens = positives(rng)
    items: list[tuple[str, list[tuple[str, str]]]] = []  # (text, [(type, value)])
    for kind, gen in gens.items():
        for _ in range(args.per_type):
            phrase, value = gen()
            items.append((rng.choice(PROSE).format(phrase), [(kind, value)]))
    neg = negatives(rng)
    for _ in range(args.per_type * 3):
        items.append((rng.choice(PROSE).format(rng.choice(neg)()), []))
    # a few texts with two PII items, to check spans do not swallow each other
    for _ in range(args.per_type // 3):
        (p1, v1), (p2, v2) = gens["PHONE"](), gens["ID_CARD"]()
        items.append((f"{p1}，{p2}。", [("PHONE", v1), ("ID_CARD", v2)]))
    rng.shuffle(items)

    scanner = PIIScanner()
    tp, fp, fn = Counter(), Counter(), Counter()
    examples: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    found_all = [scanner.find(text) for text, _ in items]
    elapsed = time.perf_counter() - t0
    for (text, labels), found in zip(items, found_all, strict=True):
        want = Counter(labels)
        got = Counter((m.kind, m.text) for m in found)
        for key in got | want:
            hit = min(got[key], want[key])
            tp[key[0]] += hit
            fp[key[0]] += got[key] - hit
            fn[key[0]] += want[key] - hit
            if got[key] != want[key]:
                examples.setdefault(key[0], []).append(text)
    print(f"# bench/pii.py  {len(items)} texts ({sum(len(ls) for _, ls in items)} labelled PII items, "
          f"{sum(1 for _, ls in items if not ls)} texts with none), seed {args.seed}")
    print(f"{'type':<11} {'TP':>5} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>7}   (target >= 0.98 each)")
    for kind in gens:
        p = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
        r = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
        print(f"{kind:<11} {tp[kind]:>5} {fp[kind]:>4} {fn[kind]:>4} {p:>10.4f} {r:>7.4f}")
    print(f"throughput: {len(items) / elapsed:,.0f} texts/s ({sum(len(t) for t, _ in items) / elapsed / 1e6:.2f} M chars/s)")
    for kind, texts in examples.items():
        print(f"  misses/extra for {kind}, e.g.: {texts[0]}")


if __name__ == "__main__":
    main()
