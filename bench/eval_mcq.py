"""Multiple-choice scoring speed on a tiny model, CPU, same items: log-likelihood scoring with one
forward pass per candidate (the baseline) against one pass per context for one-token candidates
(option letters, the default), at batch 1 and batch N; and generate scoring.

Prints items/s for each and the ratios: what context sharing and batching buy, and what loglik
costs against generating a short answer.

    python bench/eval_mcq.py [--items 64] [--batch 8] [--size tiny] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from medmill.evaluation.mcq import score_generate, score_loglik
from medmill.evaluation.mcq_data import MCQItem, default_prompt
from medmill.evaluation.models import load_for_eval
from medmill.trainers.init_model import init_model

TERMS = ["发热", "头痛", "咳嗽", "胸闷", "腹泻", "失眠", "乏力", "皮疹", "黄疸", "水肿", "布洛芬", "阿莫西林", "二甲双胍", "奥美拉唑"]


def make_items(n: int, seed: int) -> list[MCQItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        stem = f"患者{rng.randint(20, 80)}岁，主诉{'、'.join(rng.sample(TERMS, 3))}，最可能的处理是？（{i}）"
        options = {k: "，".join(rng.sample(TERMS, rng.randint(1, 3))) for k in "ABCDE"}
        multi = i % 5 == 0
        answer = "AC" if multi else rng.choice("ABCDE")
        items.append(MCQItem(str(i), "bench", stem, options, answer, multi=multi, prompt=default_prompt(stem, options, multi)))
    return items


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    items = make_items(args.items, 0)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        init_model(model, size=args.size)
        lm = load_for_eval(str(model), device="cpu")
        singles = sum(not i.multi for i in items)
        candidates = singles * 5 + (len(items) - singles) * 31
        import medmill.evaluation.mcq as mcq
        from medmill.evaluation.lm import continuation_logprobs

        real = mcq.continuation_logprobs
        mcq.continuation_logprobs = lambda lm, pairs, b: continuation_logprobs(lm, pairs, b, share_context=False)
        t0 = timed(lambda: score_loglik(lm, items, "letter", True, args.batch))
        mcq.continuation_logprobs = real
        t1 = timed(lambda: score_loglik(lm, items, "letter", True, 1))
        tb = timed(lambda: score_loglik(lm, items, "letter", True, args.batch))
        tg = timed(lambda: score_generate(lm, items, 8, args.batch))
    n = len(items)
    print(f"{n} items ({singles} single-answer x 5 candidates, {n - singles} multi-answer x 31 sets = {candidates} continuations), model {args.size}, {args.threads} thread(s)")
    print(f"loglik unshared b{args.batch:<2}     {n / t0:8.1f} items/s  ({candidates / t0:8.1f} continuations/s)  baseline")
    print(f"loglik batch 1          {n / t1:8.1f} items/s  ({candidates / t1:8.1f} continuations/s)")
    print(f"loglik batch {args.batch:<2}         {n / tb:8.1f} items/s  ({candidates / tb:8.1f} continuations/s)")
    print(f"generate 8 tokens b{args.batch:<2}   {n / tg:8.1f} items/s")
    print(f"ratio shared / unshared context (batch {args.batch}): {t0 / tb:.2f}x")
    print(f"ratio batch {args.batch} / batch 1 (loglik): {t1 / tb:.2f}x")
    print(f"ratio generate / loglik (same batch): {tb / tg:.2f}x items/s")


if __name__ == "__main__":
    main()
