"""build-pt throughput: MB/s of cleaned text for the whole command (read, normalise, clean, cut,
repeated-paragraph removal, running-text rules, quality, PII, safety, dedup, token estimate, write)
on a generated paged corpus, with peak memory; beside a baseline that only reads and cleans the
same files (the floor any pretraining pipeline pays), measured in the same run.

The corpus: textbook-like files of ~2 MB, each page with a running header and a page number, lines
wrapped mid-sentence, a copyright page per book, varied sentences (no near-duplicates), 1 % of the
books copied (exact duplicates to remove).

    python bench/pretrain.py --mb 200          # the figure the issue asks for
    python bench/pretrain.py --mb 20 --mb 200  # several sizes in one run
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TERMS = (
    "高血压 糖尿病 冠心病 哮喘 肺炎 胃炎 肝硬化 肾衰竭 痛风 贫血 甲亢 偏头痛 脑卒中 心力衰竭 慢阻肺 结核 乙肝 胆囊炎 胰腺炎 "
    "类风湿 骨质疏松 白血病 淋巴瘤 肺癌 胃癌 肝癌 乳腺癌 抑郁症 焦虑症 帕金森 癫痫 湿疹 银屑病 荨麻疹 过敏性鼻炎 中耳炎 青光眼"
).split()
VERBS = "影响 改变 促进 限制 决定 反映 推动 减少 增加 维持 诱发 加重 缓解 伴随 提示".split()
OBJECTS = "生活质量 发病风险 长期预后 日常管理 整体水平 主要特点 病理结构 变化趋势 治疗反应 复发概率 用药依从性 营养状况".split()
ADVERBS = "明显 逐渐 持续 显著 缓慢 迅速 稳定 间接 部分 反复".split()
TAILS = "需要长期观察 值得进一步研究 与多种因素有关 在不同地区差异较大 近年来受到重视 应当综合评估 需结合影像学检查 应定期随访".split()
HEADER = "临床医学（第3版）"
COPYRIGHT = "版权所有，侵权必究。本书由示例医学出版社出版，未经许可不得以任何方式复制或抄袭本书内容。"


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(TERMS, 2)
    return (f"{a}{rng.choice(ADVERBS)}{rng.choice(VERBS)}{b}的{rng.choice(OBJECTS)}，{rng.choice(TAILS)}，"
            f"第{rng.randint(1, 99999)}例患者的{rng.choice(OBJECTS)}{rng.choice(VERBS)}约{rng.randint(2, 98)}%。")


def _wrap(para: str, width: int = 38) -> list[str]:
    out = []
    while len(para) > width:
        cut = width - 1 if para[width - 1] in "。；" else width
        out.append(para[:cut])
        para = para[cut:]
    return out + [para]


def write_corpus(root: Path, megabytes: float, seed: int = 0, book_bytes: int = 2_000_000) -> tuple[int, int]:
    """Paged books totalling about `megabytes` MB of UTF-8; returns (files, bytes)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    target = int(megabytes * 1_000_000)
    written = files = 0
    while written < target:
        lines: list[str] = []
        size = 0
        chapter = 0
        while size < min(book_bytes, target - written):
            chapter += 1
            lines.append(f"第{chapter}章 {rng.choice(TERMS)}")
            for section in range(1, 5):
                lines.append(f"第{section}节 {rng.choice(TERMS)}的{rng.choice(['病因', '诊断', '治疗', '预防', '护理'])}")
                for _ in range(rng.randint(3, 6)):
                    para = "".join(_sentence(rng) for _ in range(rng.randint(2, 7)))
                    lines += _wrap(para)
                    size += len(para.encode())
        pages = [lines[i : i + 30] for i in range(0, len(lines), 30)]
        text = COPYRIGHT + "\n\f" + "\f".join("\n".join([HEADER, *p, str(n + 1)]) for n, p in enumerate(pages))
        path = root / f"book{files:04d}.txt"
        path.write_text(text, encoding="utf-8")
        files += 1
        written += path.stat().st_size
        if files % 100 == 1 and written < target:  # an exact copy now and then
            shutil.copy(path, root / f"book{files:04d}_copy.txt")
            files += 1
            written += path.stat().st_size
    return files, written


BASELINE = """
import sys, time
from pathlib import Path
from medmill.builders.readers.documents import load_documents
from medmill.builders.text.clean import clean_text
out = 0
for f in sorted(Path(sys.argv[1]).glob("*.txt")):
    for doc in load_documents([f]).documents:
        out += len(clean_text(doc.text).text.encode())
print(out)
"""


def _child(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB of this child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: run the smaller job first
    return seconds, max(peak, before) / 1024, proc.stdout


def run_size(mb: float, work: Path, repeat_baseline: bool) -> dict:
    corpus = work / f"corpus_{mb:g}mb"
    t0 = time.perf_counter()
    files, size = write_corpus(corpus, mb)
    gen = time.perf_counter() - t0
    base_s, base_rss, base_out = _child([sys.executable, "-c", BASELINE, str(corpus)]) if repeat_baseline else (0.0, 0.0, "0")
    out = work / f"out_{mb:g}mb"
    cmd = [sys.executable, "-m", "medmill.cli", "build-pt", str(corpus), "--out", str(out), "--val-size", "0.01"]
    full_s, full_rss, _ = _child(cmd)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    import pyarrow.parquet as pq

    cleaned = sum(
        sum(len(t.encode()) for t in pq.read_table(f, columns=["text"]).column("text").to_pylist())
        for f in sorted((out / "data").glob("*.parquet"))
    )
    return {
        "input_mb": round(size / 1e6, 1),
        "files": files,
        "generate_s": round(gen, 1),
        "documents": manifest["records_total"],
        "rejects": manifest["rejects_by_reason"],
        "cleaned_mb": round(cleaned / 1e6, 1),
        "build_pt_s": round(full_s, 1),
        "build_pt_cleaned_mb_s": round(cleaned / 1e6 / full_s, 2),
        "build_pt_input_mb_s": round(size / 1e6 / full_s, 2),
        "build_pt_peak_rss_mb": round(full_rss),
        "baseline_read_clean_s": round(base_s, 1),
        "baseline_cleaned_mb_s": round(int(base_out.strip() or 0) / 1e6 / base_s, 2) if base_s else None,
        "baseline_peak_rss_mb": round(base_rss) if base_s else None,
        "ratio_build_pt_vs_baseline_time": round(full_s / base_s, 2) if base_s else None,
        "timings": manifest["timings"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, action="append", help="corpus size in MB (repeatable; default 200)")
    ap.add_argument("--work", type=Path, default=None, help="folder for corpus and output (default: a temp dir, removed)")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_pt_"))
    try:
        for mb in sorted(args.mb or [200.0]):
            # each size in its own process so ru_maxrss (a running max over children) is per size
            if len(args.mb or []) > 1:
                cmd = [sys.executable, __file__, "--mb", str(mb), "--work", str(work)] + (["--no-baseline"] if args.no_baseline else [])
                subprocess.run(cmd, check=True)
                continue
            print(json.dumps(run_size(mb, work, not args.no_baseline), ensure_ascii=False), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
