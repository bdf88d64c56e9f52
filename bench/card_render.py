"""How much the rich card (statistics + PNG plots) adds to a build.

Writes dataset dirs of several sizes, then times `render_card` without plots (baseline: statistics
and template only) and with plots, side by side in one process, plus the whole `write_dataset_dir`.
Run: python bench/card_render.py [--sizes 10,1000,100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from medmill.builders.core.manifest import Manifest
from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.builders.publish.card import render_card
from medmill.schemas import Message, SFTRecord, Source

RELATIONS = ["症状", "治疗药物", "所属科室", "检查项目", "并发症", "饮食宜忌"]


def records(n: int) -> list[SFTRecord]:
    out = []
    for i in range(n):
        rel = RELATIONS[i % len(RELATIONS)]
        msgs = [
            Message(role="user", content=f"疾病{i}的{rel}有哪些？"),
            Message(role="assistant", content=f"疾病{i}的{rel}包括：头痛、发热、咳嗽、乏力。" * (1 + i % 7)),
        ]
        src = Source(file="kg.json", line=i + 1, group=f"e{i // 3}", builder="kg-qa")
        out.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=src, meta={"relation": rel}))
    return out


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,1000,100000")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # first call pays matplotlib's import once per process; reported separately
        warm = Path(tmp) / "warm"
        t = time.perf_counter()
        write_dataset_dir(warm, records(10), [], BuildInfo(kind="sft", builder="kg-qa", command="bench"), render_card=render_card)
        print(f"first build in a fresh process (10 records, includes matplotlib import): {time.perf_counter() - t:.3f}s")
        print(f"{'records':>8} {'build total':>12} {'card no plots':>14} {'card + plots':>13} {'plots add':>10} {'ratio':>6}")
        for n in [int(x) for x in args.sizes.split(",")]:
            out = Path(tmp) / f"d{n}"
            info = BuildInfo(kind="sft", builder="kg-qa", command="bench", val_size=0.1)
            recs = records(n)
            build = timed(lambda out=out, recs=recs, info=info: write_dataset_dir(out, recs, [], info, render_card=render_card), 1)
            m = Manifest.model_validate_json((out / "manifest.json").read_text(encoding="utf-8"))
            base = timed(lambda out=out, m=m: render_card(m, out, plots=False), args.repeats)
            full = timed(lambda out=out, m=m: render_card(m, out, plots=True), args.repeats)
            print(f"{n:>8} {build:>11.3f}s {base:>13.3f}s {full:>12.3f}s {full - base:>9.3f}s {full / base:>5.1f}x")


if __name__ == "__main__":
    main()
