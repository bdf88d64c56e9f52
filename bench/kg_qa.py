"""Benchmark of template-mode KG-QA on a QASystem-sized graph (the real medical.json has 8,807 diseases).

Writes a synthetic mongoexport-style KG (random names, shared symptom vocabulary), then times
reading (with the person-name filter) and record generation, and compares the name filter's
dictionary-only jieba tagging with jieba's default HMM tagging on the same values (the baseline).

    python bench/kg_qa.py [--entities 9000] [--sample 300]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def write_kg(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]

    def word(k: int) -> str:
        return "".join(rng.choice(chars) for _ in range(k))

    symptoms = [word(rng.randint(2, 5)) for _ in range(3000)]
    checks = [word(4) + "检查" for _ in range(800)]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            rec = {
                "_id": {"$oid": f"{i:024x}"}, "name": word(4) + "病", "desc": word(80) + "。",
                "cause": word(300) + "。", "prevent": word(60) + "。",
                "symptom": rng.sample(symptoms, rng.randint(3, 12)), "acompany": [word(4)],
                "cure_department": ["内科", "呼吸内科"], "cure_way": ["药物治疗"], "check": rng.sample(checks, 4),
                "common_drug": [word(5)], "do_eat": [word(2) for _ in range(4)],
                "drug_detail": [word(8) for _ in range(10)], "cured_prob": "约40%", "yibao_status": "否",
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=9000)
    parser.add_argument("--sample", type=int, default=300, help="values timed with the HMM baseline")
    args = parser.parse_args()

    import jieba.posseg

    from medmill.builders.kg_qa.template_qa import TemplateQAConfig, build_template_records
    from medmill.builders.kg_qa.templates import load_templates
    from medmill.builders.readers.kg import read_kg
    from medmill.builders.readers.kg_clean import PersonNameFilter

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "medical.json"
        write_kg(path, args.entities)
        size = path.stat().st_size
        t0 = time.perf_counter()
        read = read_kg([path])
        t1 = time.perf_counter()
        result = build_template_records(read.entities, load_templates(), TemplateQAConfig())
        t2 = time.perf_counter()

    n = len(read.entities)
    print(f"KG: {n} entities, {size / 1e6:.1f} MB")
    print(f"read:     {t1 - t0:7.2f} s  {n / (t1 - t0):9.0f} entities/s")
    print(f"generate: {t2 - t1:7.2f} s  {len(result.records) / (t2 - t1):9.0f} records/s  ({len(result.records)} records)")

    values = sorted({v for e in read.entities[: args.sample] for v in e.relations.get("症状", [])})[: args.sample]
    fast = PersonNameFilter()
    fast("预热")  # load jieba's dictionary outside the timing
    t0 = time.perf_counter()
    for v in values:
        fast._is_name(v)  # uncached: the filter's per-value cache would hide the tagging cost
    t1 = time.perf_counter()
    for v in values:
        jieba.posseg.lcut(v)  # baseline: jieba's default tagging, HMM on
    t2 = time.perf_counter()
    per_fast, per_hmm = (t1 - t0) / len(values), (t2 - t1) / len(values)
    print(f"name filter: {per_fast * 1e3:.3f} ms/value; baseline jieba HMM tagging: {per_hmm * 1e3:.3f} ms/value; "
          f"speed-up x{per_hmm / per_fast:.0f} ({len(values)} values)")


if __name__ == "__main__":
    main()
