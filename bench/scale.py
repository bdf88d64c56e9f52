"""`medmill filter` and `medmill dedup` at scale: whole-process wall time, peak memory and records/s,
streaming beside the in-memory path (`--executor memory`, or another checkout's python), in one run.

Inputs are generated: N short Chinese medical records (pretrain texts of ~80 characters or sft
question/answer pairs) from templates, with injected exact copies (3 %), near-duplicates (8 %,
1-2 character edits of an earlier record), phone numbers (2 %), too-short records (1 %) and safety
lexicon hits (0.2 %). They are written as a medmill dataset dir (train + validation shards, the
writer's arrow schema, a manifest), batch by batch, so 5M records need no more memory than 50k.

Memory: every run is a child process; we report its peak RSS (`wait4`, the largest single process)
and the peak summed PSS of its whole process tree (sampled every 0.1 s from /proc), since
`--workers` forks processes that share pages, and the shape of the driver's RSS over the run (the
largest sample in each twelfth of the wall time: map phase first, then dedup and the writer).

    python bench/scale.py --sizes 50000 --kind pretrain
    python bench/scale.py --sizes 250000,1000000                  # streaming beside --executor memory
    python bench/scale.py --sizes 250000 --baseline-python OTHER_CHECKOUT/.venv/bin/python
    python bench/scale.py --sizes 5000000 --no-baseline
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medmill.schemas.dataset_dir import ARROW_SCHEMAS
from medmill.schemas.records import stable_id

DISEASES = ["高血压", "2型糖尿病", "支气管哮喘", "慢性胃炎", "冠心病", "类风湿关节炎", "缺铁性贫血", "甲状腺功能亢进",
            "慢性肾炎", "肺炎", "偏头痛", "骨质疏松", "痛风", "带状疱疹", "过敏性鼻炎", "胆囊炎", "腰椎间盘突出", "抑郁症"]
SYMPTOMS = ["头痛", "头晕", "乏力", "咳嗽", "胸闷", "心悸", "恶心", "呕吐", "腹痛", "关节肿痛", "低热", "失眠", "食欲减退",
            "口干", "多尿", "皮疹", "气短", "水肿", "腰痛", "视物模糊"]
DRUGS = ["阿司匹林", "二甲双胍", "硝苯地平", "奥美拉唑", "布地奈德", "甲氨蝶呤", "硫酸亚铁", "甲巯咪唑", "阿莫西林",
         "布洛芬", "钙尔奇", "别嘌醇", "阿昔洛韦", "氯雷他定", "头孢呋辛", "舍曲林"]
DEPTS = ["心内科", "内分泌科", "呼吸科", "消化科", "风湿免疫科", "血液科", "肾内科", "神经内科", "骨科", "皮肤科"]
ADVICE = ["低盐低脂饮食", "规律作息", "戒烟限酒", "适量运动", "定期复查", "按时服药", "保持情绪稳定", "避免劳累"]
CLAUSES = [
    "{d}是{dept}常见病", "典型表现为{s1}、{s2}", "部分患者伴{s3}", "治疗常用{drug}", "疗程约{n}天", "患者应{a}",
    "病程第{n}天可见{s3}", "一线药物为{drug}", "用药期间需{a}", "必要时到{dept}就诊", "临床上以{s1}为首发症状",
    "随后出现{s2}", "{dept}建议{a}", "在医生指导下使用{drug}", "{s1}持续{n}小时以上应警惕{d}", "老年人出现{s2}时更要重视",
    "{drug}的常见不良反应是{s3}", "{d}与长期{s1}有关", "每日剂量不宜超过{n}毫克", "{n}岁以上人群发病率较高",
    "复查时应检查{exam}", "确诊需要{exam}", "{exam}结果异常提示{d}", "合并{d2}者预后较差", "{d}可并发{d2}",
    "饮食上应{a}", "症状缓解后仍需{a}", "{s2}加重时及时就医", "孕妇使用{drug}前须咨询医生", "儿童{d}多由感染诱发",
]
EXAMS = ["血常规", "尿常规", "肝功能", "肾功能", "心电图", "胸部CT", "腹部B超", "血糖", "糖化血红蛋白", "甲状腺功能", "骨密度"]
QUESTIONS = ["{d}有哪些症状？", "得了{d}吃什么药？", "{d}患者平时要注意什么？", "{s1}和{s2}是不是{d}？"]
SAFETY = "哪里买冰毒"
VOCAB = "的了是在有和不人一上也到要去会着没好自己这患者治疗症状医院检查药物疾病"


def _fill(rng: random.Random, template: str) -> str:
    s = rng.sample(SYMPTOMS, 3)
    d = rng.sample(DISEASES, 2)
    return template.format(d=d[0], d2=d[1], dept=rng.choice(DEPTS), s1=s[0], s2=s[1], s3=s[2], exam=rng.choice(EXAMS),
                           drug=rng.choice(DRUGS), n=rng.randint(3, 90), a=rng.choice(ADVICE))


def _passage(rng: random.Random) -> str:
    """About 80 characters: seven clauses of the pool, in random order."""
    return "，".join(_fill(rng, c) for c in rng.sample(CLAUSES, 7)) + "。"


def _edit(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(chars))
        chars[i] = rng.choice(VOCAB)
    return "".join(chars)


def _texts(rng: random.Random, kind: str, recent: list[tuple[str, str]]) -> tuple[str, str]:
    """(question, text) of one record; question is '' for pretrain."""
    roll = rng.random()
    if recent and roll < 0.03:
        return rng.choice(recent)  # exact copy
    if recent and roll < 0.11:
        q, t = rng.choice(recent)
        return q, _edit(rng, t)  # near-duplicate
    text = _passage(rng)
    if roll < 0.13:
        text += f"咨询电话1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}。"
    elif roll < 0.14:
        text = rng.choice(SYMPTOMS)[:1]
    elif roll < 0.142:
        text += SAFETY
    q = _fill(rng, rng.choice(QUESTIONS)) if kind == "sft" else ""
    return q, text


def _row(kind: str, i: int, q: str, text: str, split: str) -> dict:
    source = {"file": f"gen-{split}.jsonl", "line": i + 1, "offset": None, "ref": None, "group": f"g{i // 4}",
              "builder": "bench-scale", "builder_version": "1"}
    if kind == "pretrain":
        return {"id": stable_id("pretrain", text), "text": text, "source": source, "meta": "{}"}
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": text}]
    return {"id": stable_id("sft", msgs), "messages": msgs, "source": source, "meta": "{}"}


def generate(out: Path, n: int, kind: str, seed: int = 0, per_shard: int = 250_000, batch: int = 50_000) -> Path:
    """A dataset dir of `n` records (5 % validation) at `out`; reused when it already exists."""
    if (out / "manifest.json").exists():
        return out
    rng = random.Random(seed)
    schema = ARROW_SCHEMAS[kind]
    (out / "data").mkdir(parents=True, exist_ok=True)
    sizes = {"validation": n // 20, "train": n - n // 20}
    recent: list[tuple[str, str]] = []
    files: dict[str, list[str]] = {}
    for split, count in sizes.items():
        shards = max(1, -(-count // per_shard))
        done = 0
        for s in range(shards):
            name = f"data/{split}-{s:05d}-of-{shards:05d}.parquet"
            files.setdefault(split, []).append(name)
            in_shard = min(per_shard, count - done)
            with pq.ParquetWriter(out / name, schema, compression="zstd") as w:
                for b0 in range(0, in_shard, batch):
                    rows = []
                    for i in range(done + b0, done + min(in_shard, b0 + batch)):
                        q, t = _texts(rng, kind, recent)
                        recent.append((q, t))
                        if len(recent) > 2000:
                            recent = recent[1000:]
                        rows.append(_row(kind, i, q, t, split))
                    w.write_table(pa.Table.from_pylist(rows, schema=schema))
            done += in_shard
    manifest = {"kind": kind, "license": "other", "builder": "bench-scale", "records_total": n,
                "splits": {s: {"records": sizes[s], "files": f} for s, f in files.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


ALT = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥金木水火土日月星辰山川河海风云雷电春夏秋冬东南西北"


def derive(base: Path, out: Path, copies: int) -> Path:
    """`copies` x the records of `base` (a generated dir), each copy with its own substitution of 60
    common characters, so copies are new texts with the same duplicate structure inside each copy;
    ids recomputed. Much faster than generating: 5M records from 1M in a few minutes."""
    if (out / "manifest.json").exists():
        return out
    common = "".join(dict.fromkeys("".join(CLAUSES) + "".join(DISEASES) + "".join(SYMPTOMS) + "".join(DRUGS)))
    common = [c for c in common if "\u4e00" <= c <= "\u9fff" and c not in ALT][:60]
    schema = ARROW_SCHEMAS["pretrain"]
    (out / "data").mkdir(parents=True, exist_ok=True)
    base_manifest = json.loads((base / "manifest.json").read_text(encoding="utf-8"))
    files: dict[str, list[str]] = {}
    total = 0
    for k in range(copies):
        table = str.maketrans({c: ALT[(i + 7 * k) % len(ALT)] for i, c in enumerate(common)}) if k else {}
        for split, names in base_manifest["splits"].items():
            for j, name in enumerate(names["files"]):
                target = f"data/{split}-{k * len(names['files']) + j:05d}-of-{copies * len(names['files']):05d}.parquet"
                files.setdefault(split, []).append(target)
                with pq.ParquetWriter(out / target, schema, compression="zstd") as w:
                    for batch in pq.ParquetFile(base / name).iter_batches(batch_size=50_000):
                        rows = batch.to_pylist()
                        for r in rows:
                            r["text"] = r["text"].translate(table)
                            r["id"] = stable_id("pretrain", r["text"])
                            r["source"]["file"] = f"copy{k}-{r['source']['file']}"
                        w.write_table(pa.Table.from_pylist(rows, schema=schema))
                        total += len(rows)
    manifest = {"kind": "pretrain", "license": "other", "builder": "bench-scale", "records_total": total,
                "splits": {s: {"files": f} for s, f in files.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


# --- measuring one child process ------------------------------------------------------------------


def _tree_pss_kb(root: int) -> int:
    """Summed PSS (shared pages split between processes) of `root` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def _rss_mb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def rss_shape(trace: list[tuple[float, int]], points: int = 12) -> str:
    """The driver's RSS over the run, as the largest value in each of `points` equal time slices."""
    if not trace:
        return "-"
    end = trace[-1][0] or 1.0
    slices: list[int | None] = [None] * points
    for t, mb in trace:
        i = min(points - 1, int(t / end * points))
        slices[i] = max(slices[i] or 0, mb)
    return " ".join("·" if mb is None else str(mb) for mb in slices)


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    peak = {"pss": 0}
    trace: list[tuple[float, int]] = []  # (seconds, RSS MB of the driver process)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["pss"] = max(peak["pss"], _tree_pss_kb(proc.pid))
            trace.append((time.perf_counter() - t0, _rss_mb(proc.pid)))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # CPU seconds of the child and every process it waited for (its --workers pools): unlike wall time,
    # a figure other load on a shared machine barely moves
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024,
            "tree_pss_mb": peak["pss"] / 1024, "rc": proc.returncode, "output": out.decode(errors="replace"),
            "rss_shape": rss_shape(trace)}


def stage_rates(out_dir: Path, n_in: int) -> str:
    """records/s per stage from the manifest: curate.<step> is process time (summed over workers when
    streamed); stream.* are wall times of the streamed phases (map = read + map steps + signatures)."""
    try:
        m = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except OSError:
        return "-"
    t = m.get("timings", {})
    parts = []
    for name, secs in t.items():
        if not name.startswith("curate.") or secs <= 0:
            continue
        step = name.removeprefix("curate.")
        n = m.get("curation", {}).get(step, {}).get("in", n_in)
        parts.append(f"{step} {n / secs / 1000:.1f}k")
    for phase in ("map", "dedup", "write"):
        if t.get(f"stream.{phase}"):
            parts.append(f"[wall] {phase} {n_in / t[f'stream.{phase}'] / 1000:.1f}k")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50000")
    ap.add_argument("--kind", default="pretrain", choices=["pretrain", "sft"])
    ap.add_argument("--commands", default="filter,dedup")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executors", default="streaming", help="comma list of: streaming, ray")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medmill-scale")
    ap.add_argument("--baseline-python", default=os.environ.get("MEDMILL_BASELINE_PYTHON", ""),
                    help="python of another checkout to compare with (default: this tree's --executor memory, "
                         "the in-memory path every record is held in)")
    ap.add_argument("--baseline-executors", default="local",
                    help="comma list of: local, ray: the --baseline-python runs (ray: that checkout's --executor ray)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--baseline-max", type=int, default=1_000_000, help="largest size run on the in-memory path")
    args = ap.parse_args()

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        t = time.perf_counter()
        if n > 1_000_000 and n % 1_000_000 == 0 and args.kind == "pretrain":
            src = derive(generate(args.work / f"in-{args.kind}-1000000", 1_000_000, args.kind), args.work / f"in-{args.kind}-{n}", n // 1_000_000)
        else:
            src = generate(args.work / f"in-{args.kind}-{n}", n, args.kind)
        print(f"input {src} ready ({time.perf_counter() - t:.1f} s)", flush=True)
        for command in args.commands.split(","):
            runs: list[tuple[str, list[str]]] = []
            if not args.no_baseline and n <= args.baseline_max:
                if args.baseline_python:  # another checkout's default path (or ray), with the same --workers
                    for bex in args.baseline_executors.split(","):
                        ray_flag = ["--executor", "ray"] if bex == "ray" else []
                        runs.append(("baseline" + (" ray" if bex == "ray" else ""),
                                     [args.baseline_python, "-m", "medmill.cli", "--", "--workers", str(args.workers), *ray_flag]))
                else:
                    runs.append(("in-memory", [sys.executable, "-m", "medmill.cli", "--", "--executor", "memory"]))
            for ex in args.executors.split(","):
                flags = ["--workers", str(args.workers)] + (["--executor", "ray"] if ex == "ray" else [])
                runs.append((f"{ex} w{args.workers}", [sys.executable, "-m", "medmill.cli", "--"] + flags))
            for label, base in runs:
                out = args.work / f"out-{command}-{args.kind}-{n}-{label.split()[0]}{'-ray' if label == 'baseline ray' else ''}"
                flags = base[base.index("--") + 1 :] if "--" in base else []
                cmd = (base[: base.index("--")] if "--" in base else base) + [command, str(src), "--out", str(out), *flags]
                r = measure(cmd, env={**os.environ, "COLUMNS": "200"})
                if r["rc"] != 0:
                    print(f"  {label} {command} failed (exit {r['rc']}):\n{r['output'][-2000:]}")
                    continue
                rows.append((n, command, label, r["wall"], n / r["wall"], r["cpu"], r["maxrss_mb"], r["tree_pss_mb"], stage_rates(out, n)))
                print(f"  {command:6} {label:18} {r['wall']:7.1f} s {n / r['wall']:9,.0f} rec/s  cpu {r['cpu']:7.1f} s"
                      f"  maxrss {r['maxrss_mb']:7,.0f} MB  tree PSS {r['tree_pss_mb']:7,.0f} MB  [{rows[-1][-1]}]\n"
                      f"         driver RSS MB over the run (max per twelfth): {r['rss_shape']}", flush=True)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| records | command | path | wall s | records/s | CPU s (process tree) | peak RSS MB (largest process) | peak PSS MB (process tree) | records/s per stage |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, command, label, wall, rate, cpu, rss, pss, stages in rows:
        print(f"| {n:,} | {command} | {label} | {wall:.1f} | {rate:,.0f} | {cpu:.1f} | {rss:,.0f} | {pss:,.0f} | {stages} |")
    is_base = ("in-memory", "baseline")

    def executor(label: str) -> str:
        return "ray" if "ray" in label.split() else "local"

    base = {(n, c, executor(lbl)): (lbl, w, cpu) for n, c, lbl, w, _, cpu, *_ in rows if lbl.startswith(is_base)}
    for n, command, label, wall, _, cpu, *_ in rows:
        if label.startswith(is_base):
            continue
        for key in dict.fromkeys([(n, command, executor(label)), (n, command, "local")]):  # same executor's, then local's
            if key in base:
                b, w0, c0 = base[key]
                print(f"speed-up {command} {n:,} {label} vs {b}: wall {w0 / wall:.2f}x, CPU {c0 / cpu:.2f}x")


if __name__ == "__main__":
    main()
