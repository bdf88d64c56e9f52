"""SFT throughput with and without packing, same data, same tiny model, one run.

Prints tokens/s (real, non-padding tokens trained per second) and the share of padding positions
in the batches for trl's per-example padding and for trl's bfd packing (padding-free), plus ratios.

    python bench/train.py [--examples 400] [--steps 20] [--batch 8] [--max-length 256]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from medmill.builders.core.writer import BuildInfo, write_dataset_dir
from medmill.schemas import Message, SFTRecord, Source
from medmill.trainers.data import DataSpec, load_training_data
from medmill.trainers.init_model import init_model
from medmill.trainers.options import TrainOptions, build_config, config_class
from medmill.trainers.sft import run_sft

SYMPTOMS = ["头痛", "发热", "咳嗽", "胸闷", "腹泻", "失眠", "乏力", "皮疹"]
ADVICE = ["多休息", "多喝水", "清淡饮食", "按时服药", "必要时就医", "监测体温", "避免熬夜", "复查血常规"]


def make_dir(root: Path, n: int, seed: int) -> Path:
    """Conversations of very different lengths, like real medical QA (short facts to long advice)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        q = "，".join(rng.choices(SYMPTOMS, k=rng.randint(1, 6))) + f"怎么办？{i}"
        a = "，".join(rng.choices(ADVICE, k=rng.choice([1, 2, 4, 8, 16, 32]))) + "。"
        msgs = [Message(role="user", content=q), Message(role="assistant", content=a)]
        records.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(group=str(i), builder="bench")))
    out = root / "sft"
    write_dataset_dir(out, records, [], BuildInfo(kind="sft", builder="bench", command="bench"))
    return out


def padding_share(trainer) -> tuple[int, int]:
    """(real tokens, padded positions) over one pass of the train dataloader."""
    real = total = 0
    for batch in trainer.get_train_dataloader():
        total += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return real, total


def run(model: Path, data_dir: Path, out: Path, packing: bool, args) -> dict:
    opts = TrainOptions(stage="sft", model=str(model), data=[str(data_dir)], out=str(out), preview=False, no_resume=True)
    extras = ["--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch), "--max_length", str(args.max_length),
              "--save_strategy", "no", "--logging_steps", "1000", "--learning_rate", "1e-3"]  # fmt: skip
    if packing:
        extras += ["--packing", "--packing_strategy", "bfd"]
    config = build_config(config_class("sft"), {"output_dir": str(out), "report_to": [], "use_cpu": True, "bf16": False, "assistant_only_loss": True, "eval_strategy": "no"}, {}, extras)
    data = load_training_data([DataSpec(data_dir)], "sft")
    captured = {}

    import medmill.trainers.sft as sft_module

    original_fit = sft_module.fit

    def timed_fit(trainer, opts, tokenizer):
        captured["real"], captured["total"] = padding_share(trainer)
        captured["batches"] = len(trainer.get_train_dataloader())
        start = time.perf_counter()
        result = original_fit(trainer, opts, tokenizer)
        captured["seconds"] = time.perf_counter() - start
        return result

    sft_module.fit = timed_fit
    try:
        result = run_sft(opts, config, data)
    finally:
        sft_module.fit = original_fit
    steps = result.global_step
    tokens_per_step = captured["real"] / captured["batches"]
    return {
        "steps": steps,
        "seconds": captured["seconds"],
        "tokens_per_s": tokens_per_step * steps / captured["seconds"],
        "padding_share": 1 - captured["real"] / captured["total"],
        "batches_per_epoch": captured["batches"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_dir = make_dir(root, args.examples, args.seed)
        init_model(root / "tiny", corpus=[data_dir], size="tiny")
        padded = run(root / "tiny", data_dir, root / "padded", False, args)
        packed = run(root / "tiny", data_dir, root / "packed", True, args)
    print(f"\nSFT on {args.examples} conversations, tiny model, {args.steps} steps, batch {args.batch}, max_length {args.max_length}")
    print(f"{'':24}{'padded':>12}{'bfd packing':>14}")
    for key, fmt in (("tokens_per_s", "{:12,.0f}"), ("padding_share", "{:12.1%}"), ("seconds", "{:12.2f}"), ("batches_per_epoch", "{:12d}")):
        print(f"{key:24}" + fmt.format(padded[key]) + "  " + fmt.format(packed[key]))
    print(f"tokens/s ratio packed/padded: {packed['tokens_per_s'] / padded['tokens_per_s']:.2f}x")
    print(f"batches per epoch ratio padded/packed: {padded['batches_per_epoch'] / packed['batches_per_epoch']:.2f}x")


if __name__ == "__main__":
    main()
