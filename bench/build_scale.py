"""`medmill build-pt` (or `build-dialogue`, `build-kg-qa`) at scale: wall time, peak memory and items/s of the streamed
build (`--executor local`) beside the in-memory one (`--executor memory`), in one run, plus whether their dataset dirs
are byte-identical (every file's sha256; the manifest without timings and command line, the card without
its command line).

Input is generated: N JSON Lines documents of 1-3 passages (~80-240 characters) from bench/scale.py's
templates, with a repeated footer paragraph in 10 % (boilerplate removal), exact copies (3 %),
near-duplicates (5 %), phone numbers (2 %) and too-short texts (1 %). `--builder dialogue`: N Huatuo-style
JSON Lines rows (instruction, empty input, output) of the same passages, with exact copies (3 %), English
strays (1 %) and phone numbers (2 %). Written line by line, so 1M rows need no memory. `--builder kg-qa`:
a mongoexport-style KG of N entities from bench/kg_qa.py (random names, a shared symptom vocabulary, long
text attributes): template mode makes ~16 records per entity, so the items are entities, not records.

Memory: every build is a child process (bench/scale.py's `measure`): its peak RSS (`wait4`, the largest
single process) and the peak summed PSS of its process tree (workers share pages with the driver).

    python bench/build_scale.py --sizes 250000,1000000
    python bench/build_scale.py --sizes 20000 --workers 2 --no-baseline
    python bench/build_scale.py --builder dialogue --sizes 100000
    python bench/build_scale.py --builder kg-qa --sizes 5000,20000 --baseline-python /work/venvs/cc/bin/python

With `--baseline-python` (another checkout's python, e.g. main's), that checkout's default build
(`--executor local --workers N`) runs too, as a third row. CPU seconds are the process tree's (user + sys).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kg_qa import write_kg  # noqa: E402
from scale import _edit, _passage, measure  # noqa: E402  (bench/ is a folder of scripts)

FOOTER = "本资料仅供医学专业人员参考，不能替代医生的诊断与治疗建议，如有不适请及时就医。"


def generate(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            roll = rng.random()
            if recent and roll < 0.03:
                text = rng.choice(recent)
            elif recent and roll < 0.08:
                text = _edit(rng, rng.choice(recent))
            elif roll < 0.09:
                text = "短文本。"
            else:
                text = "\n".join(_passage(rng) for _ in range(rng.randint(1, 3)))
                if roll < 0.11:
                    text += f"联系电话13{rng.randint(100000000, 999999999)}。"
                elif roll < 0.21:
                    text += "\n" + FOOTER
            recent.append(text)
            if len(recent) > 1000:
                recent.pop(rng.randrange(len(recent)))
            f.write(json.dumps({"text": text, "id": i}, ensure_ascii=False) + "\n")
    return path


def generate_dialogue(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    recent: list[dict] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            roll = rng.random()
            if recent and roll < 0.03:
                row = rng.choice(recent)
            elif roll < 0.04:
                row = {"instruction": f"Doctor, I have had a cough for {i % 30 + 1} days. What should I do?", "input": "",
                       "output": "Rest, drink fluids and see a doctor if it lasts more than two weeks."}
            else:
                question = _passage(rng)[:30].rstrip("，。") + "，怎么办？"
                answer = _passage(rng) + (f"联系电话13{rng.randint(100000000, 999999999)}。" if roll < 0.06 else "")
                row = {"instruction": question, "input": "", "output": answer}
            recent.append(row)
            if len(recent) > 1000:
                recent.pop(rng.randrange(len(recent)))
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def generate_kg(path: Path, n: int, seed: int = 0) -> Path:
    write_kg(path, n, seed)
    return path


GENERATORS = {"pt": generate, "dialogue": generate_dialogue, "kg-qa": generate_kg}


def dir_digest(out: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        data = f.read_bytes()
        if f.name == "manifest.json":
            m = json.loads(data)
            m.pop("timings")
            m.pop("command")  # names --out and the flags, which differ between the runs
            data = json.dumps(m, ensure_ascii=False, sort_keys=True).encode()
        elif f.name == "README.md":
            data = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"- Command:"))
        h.update(str(f.relative_to(out)).encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="250000,1000000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--builder", choices=sorted(GENERATORS), default="pt")
    ap.add_argument("--baseline-python", default="", help="another checkout's python: its default build as a third row")
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-memory build")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir, removed)")
    args = ap.parse_args()
    medmill = str(Path(sys.executable).parent / "medmill")
    work = args.work or Path(tempfile.mkdtemp(prefix="build-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            src = GENERATORS[args.builder](work / f"{args.builder}-{n}.jsonl", n)
            print(f"build-{args.builder}, {n:,} items: {src.stat().st_size / 1e6:,.0f} MB of JSON Lines"
                  f" (load average {os.getloadavg()[0]:.1f})", flush=True)
            runs = [("streamed", [medmill], ["--executor", "local", "--workers", str(args.workers)])]
            if not args.no_baseline:
                runs.append(("in memory", [medmill], ["--executor", "memory"]))
            if args.baseline_python:
                runs.append(("baseline", [args.baseline_python, "-m", "medmill.cli"], ["--workers", str(args.workers)]))
            digests = {}
            for label, exe, flags in runs:
                out = work / f"out-{n}-{label.replace(' ', '-')}"
                r = measure([*exe, f"build-{args.builder}", str(src), "--out", str(out), "--val-size", "0.02", *flags])
                if r["rc"] != 0:
                    print(r["output"][-3000:])
                    raise SystemExit(f"{label} build of {n:,} failed (exit {r['rc']})")
                m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
                digests[label] = dir_digest(out)
                rows.append((n, label, r["wall"], r["cpu"], n / r["wall"], r["maxrss_mb"], r["tree_pss_mb"], m["records_total"]))
                print(f"  {label:9s} {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  {n / r['wall']:7,.0f} items/s  peak RSS "
                      f"{r['maxrss_mb']:7,.0f} MB  tree PSS {r['tree_pss_mb']:7,.0f} MB  records {m['records_total']:,}", flush=True)
                shutil.rmtree(out, ignore_errors=True) if label != "streamed" else None
            for other in ("in memory", "baseline"):
                if other in digests:
                    # the streamed dir was kept until the others were digested
                    print(f"  byte-identical to {other}: {digests['streamed'] == digests[other]}", flush=True)
            shutil.rmtree(work / f"out-{n}-streamed", ignore_errors=True)
            src.unlink()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"| build-{args.builder} items | path | wall s | CPU s | items/s | peak RSS MB (largest process) | peak PSS MB (process tree) | records written |")
    print("|---|---|---|---|---|---|---|---|")
    for n, label, wall, cpu, rate, rss, pss, kept in rows:
        print(f"| {n:,} | {label} | {wall:.1f} | {cpu:.1f} | {rate:,.0f} | {rss:,.0f} | {pss:,.0f} | {kept:,} |")
    by = {(n, label): (wall, cpu, rss, pss) for n, label, wall, cpu, _r, rss, pss, _k in rows}
    for n in sorted({r[0] for r in rows}):
        for other in ("in memory", "baseline"):
            if (n, other) in by:
                (ws, cs, rs, ps), (wo, co, ro, po) = by[(n, "streamed")], by[(n, other)]
                print(f"{n:,}: streamed / {other}: wall x{ws / wo:.2f}, CPU x{cs / co:.2f}, peak RSS x{rs / ro:.2f}, "
                      f"tree PSS x{ps / po:.2f}")


if __name__ == "__main__":
    main()
