"""Per-record curation map steps (validate, quality, PII, safety) and the MinHash stage, one core, in
process: µs per record and records/s per step, this tree beside a baseline tree (another checkout, run
in a subprocess with its own modules), plus the whole `medmill filter` / `medmill dedup` commands on a
dataset dir of the same records. Every step's output (kept records, reject rows, counters) is hashed,
and the whole commands' shards and rejects are compared, so the figures come with "same output: yes".

Records are generated: short (~80-character) Chinese medical pretrain texts from templates with exact
copies (3 %), near-duplicates (8 %), phone numbers (2 %), too-short texts (1 %) and safety hits
(0.2 %) -- the generator of bench/scale.py. `--corpus samples` instead takes every text of
../shared/samples as pretrain records and as SFT question/answer pairs (outputs compared only).

    python bench/curation_steps.py --baseline-tree /tmp/base            # 100k records
    python bench/curation_steps.py --n 20000 --no-commands --baseline-tree /tmp/base
    python bench/curation_steps.py --corpus samples --no-commands --baseline-tree /tmp/base

A baseline tree is made with `git archive main | tar -x -C /tmp/base` (same layout as this one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SAMPLES = HERE.parents[2] / "shared" / "samples"

# --- records (the generator of bench/scale.py) -------------------------------------------------------

sys.path.insert(0, str(HERE.parent))
from scale import CLAUSES, SAFETY, SYMPTOMS, _edit, _fill  # noqa: E402  (bench/ is not a package)


def generated_texts(n: int, seed: int = 0) -> list[str]:
    """`n` pretrain texts, drawn as bench/scale.py draws them (same seed, same texts)."""
    rng = random.Random(seed)
    recent: list[str] = []
    out = []
    for _ in range(n):
        roll = rng.random()
        if recent and roll < 0.03:
            text = rng.choice(recent)
        elif recent and roll < 0.11:
            text = _edit(rng, rng.choice(recent))
        else:
            text = "，".join(_fill(rng, c) for c in rng.sample(CLAUSES, 7)) + "。"
            if roll < 0.13:
                text += f"咨询电话1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}。"
            elif roll < 0.14:
                text = rng.choice(SYMPTOMS)[:1]
            elif roll < 0.142:
                text += SAFETY
        out.append(text)
        recent.append(text)
        if len(recent) > 2000:
            recent = recent[1000:]
    return out


def sample_texts() -> list[str]:
    """Every string of every sample file (JSON values, CSV cells, text lines), as written."""
    import csv

    out: list[str] = []

    def strings(value: object) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                strings(v)
        elif isinstance(value, list):
            for v in value:
                strings(v)

    for f in sorted(SAMPLES.iterdir()):
        if f.suffix == ".csv":
            for enc in ("utf-8", "gb18030"):
                try:
                    with open(f, encoding=enc, newline="") as fh:
                        for row in csv.reader(fh):
                            out.extend(row)
                    break
                except UnicodeDecodeError:
                    continue
        elif f.suffix in (".json", ".jsonl", ".txt"):
            text = f.read_text(encoding="utf-8", errors="replace")
            try:
                strings(json.loads(text))
                continue
            except json.JSONDecodeError:
                pass
            for line in text.splitlines():
                try:
                    strings(json.loads(line))
                except json.JSONDecodeError:
                    out.append(line)
    return [t for t in out if t.strip()]


def make_records(corpus: str, n: int) -> list:
    from medmill.schemas import Message, PretrainRecord, SFTRecord, Source

    if corpus == "generated":
        texts = generated_texts(n)
        return [PretrainRecord(id=PretrainRecord.make_id(t), text=t, source=Source(file="gen.jsonl", line=i + 1, builder="bench"))
                for i, t in enumerate(texts)]
    texts = sample_texts()
    recs: list = [PretrainRecord(id=PretrainRecord.make_id(t), text=t, source=Source(file="samples", line=i, builder="bench"))
                  for i, t in enumerate(texts)]
    for i in range(0, len(texts) - 1, 2):  # neighbouring strings as question / answer (often a real pair)
        msgs = [Message(role="user", content=texts[i]), Message(role="assistant", content=texts[i + 1])]
        recs.append(SFTRecord(id=SFTRecord.make_id(msgs), messages=msgs, source=Source(file="samples", line=i, builder="bench")))
    return recs


# --- one core, in process ------------------------------------------------------------------------------


def _digest(h: hashlib._Hash, result) -> None:
    for r in result.records:
        h.update(json.dumps(r.to_row(), ensure_ascii=False, sort_keys=True).encode())
    for rj in result.rejects:
        h.update(json.dumps(rj.model_dump(mode="json"), ensure_ascii=False, sort_keys=True).encode())
    h.update(json.dumps(sorted(result.counters.items())).encode())


def run_steps(corpus: str, n: int, batch: int, repeat: int) -> dict:
    """µs/record of each map step (its input is the previous step's output, as in a build) and of the
    MinHash stages; a hash of each step's output. Best of `repeat` runs."""
    from medmill.builders.curation import minhash as mh
    from medmill.builders.curation.settings import CurationSettings
    from medmill.builders.curation.stages import curation_steps

    out: dict = {"steps": {}}
    t0 = time.perf_counter()
    records = make_records(corpus, n)
    out["records"] = len(records)
    out["make_s"] = time.perf_counter() - t0
    kinds: dict[str, list] = {}
    for r in records:
        kinds.setdefault(type(r).__name__, []).append(r)
    from medmill.builders.curation.text_quality import RunningTextConfig, RunningTextStep

    for kind_name, recs in kinds.items():
        kind = {"PretrainRecord": "pretrain", "SFTRecord": "sft"}[kind_name]
        steps = curation_steps(kind, CurationSettings(dedup=False))
        steps.append(RunningTextStep(RunningTextConfig()))  # build-pt's running-text rules
        for s in steps:  # build lazy state (automaton, boilerplate) outside the timing
            s(recs[:10])
        for step in steps:
            best, h, kept = float("inf"), None, []
            for _ in range(repeat):
                digest = hashlib.sha256()
                spent = 0.0
                kept = []
                for i in range(0, len(recs), batch):
                    t = time.process_time()
                    res = step(recs[i : i + batch])
                    spent += time.process_time() - t
                    kept.extend(res.records)
                    if _ == 0:  # outside the timing
                        _digest(digest, res)
                best = min(best, spent)
                h = h or digest.hexdigest()
            out["steps"][f"{kind}.{step.name}"] = {"n": len(recs), "s": best, "out": h, "kept": len(kept)}
            recs = kept
    # MinHash: shingles + signatures (one core), and exact Jaccard of candidate pairs
    texts = [r.text for r in kinds.get("PretrainRecord", [])]
    params = mh.MinHashParams()
    best, sig_hash = float("inf"), ""
    for _ in range(repeat):
        t = time.process_time()
        sigs = [mh.signatures(*params.shingles(texts[i : i + 20_000]), params.num_perm, params.seed) for i in range(0, len(texts), 20_000)]
        best = min(best, time.process_time() - t)
        sig_hash = hashlib.sha256(b"".join(s.tobytes() for s in sigs)).hexdigest()
    out["steps"]["minhash.signatures"] = {"n": len(texts), "s": best, "out": sig_hash, "kept": len(texts)}
    sets = mh.unique_sets(*params.shingles(texts[:20_000]))
    rng = random.Random(1)
    pairs = [(rng.randrange(len(sets)), rng.randrange(len(sets))) for _ in range(200_000)]
    pairs += [(i, i + 1) for i in range(len(sets) - 1)]
    best, jac_hash = float("inf"), ""
    for _ in range(repeat):
        t = time.process_time()
        sims = [mh.jaccard(sets[i], sets[j]) for i, j in pairs]
        best = min(best, time.process_time() - t)
        jac_hash = hashlib.sha256(json.dumps(sims).encode()).hexdigest()
    out["steps"]["minhash.jaccard (per pair)"] = {"n": len(pairs), "s": best, "out": jac_hash, "kept": len(pairs)}
    return out


# --- running a tree in a subprocess --------------------------------------------------------------------

# Points the editable install's module finder at another tree (same layout), then runs argv.
BOOT = r"""
import runpy, sys
root, mode, target, *argv = sys.argv[1:]
mapping = None
for finder in sys.meta_path:
    m = getattr(sys.modules.get(getattr(finder, "__module__", ""), None), "MAPPING", None)
    if isinstance(m, dict) and "medmill" in m:
        mapping = m
if root != "-":
    if mapping is None:
        sys.exit("medmill is not an editable install: cannot point it at another tree")
    here = mapping["medmill"][: -len("/medmill")]
    for k, v in list(mapping.items()):
        mapping[k] = root + v[len(here):] if v.startswith(here) else v
sys.argv = [target, *argv]
if mode == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
"""


def tree_cmd(tree: str | None, mode: str, target: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-c", BOOT, tree or "-", mode, target, *argv]


def child_steps(tree: str | None, args: argparse.Namespace) -> dict:
    cmd = tree_cmd(tree, "path", str(HERE), ["--child", "--corpus", args.corpus, "--n", str(args.n), "--batch", str(args.batch),
                                             "--repeat", str(args.repeat)])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        sys.exit(f"step run failed ({tree or 'this tree'}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(a: dict | None, b: dict) -> dict:
    if a is None:
        return b
    for name, step in b["steps"].items():
        if step["out"] != a["steps"][name]["out"]:
            sys.exit(f"{name}: output differs between two runs of the same tree")
        if step["s"] < a["steps"][name]["s"]:
            a["steps"][name] = step
    return a


def write_input_dir(out: Path, n: int) -> Path:
    """The generated records as a dataset dir (5 % validation), reused when present."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medmill.schemas.dataset_dir import ARROW_SCHEMAS
    from medmill.schemas.records import stable_id

    if (out / "manifest.json").exists():
        return out
    (out / "data").mkdir(parents=True, exist_ok=True)
    texts = generated_texts(n)
    sizes = {"validation": n // 20, "train": n - n // 20}
    start, files = 0, {}
    for split, count in sizes.items():
        rows = [{"id": stable_id("pretrain", t), "text": t, "meta": "{}",
                 "source": {"file": f"gen-{split}.jsonl", "line": i + 1, "offset": None, "ref": None, "group": f"g{i // 4}",
                            "builder": "bench", "builder_version": "1"}}
                for i, t in enumerate(texts[start : start + count])]
        name = f"data/{split}-00000-of-00001.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMAS["pretrain"]), out / name, compression="zstd")
        files[split] = {"records": count, "files": [name]}
        start += count
    manifest = {"kind": "pretrain", "license": "other", "builder": "bench", "records_total": n, "splits": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def output_digest(out: Path) -> str:
    """Hash of what a filter/dedup run decided: every shard's rows and every reject row."""
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    for f in sorted((out / "data").glob("*.parquet")):
        h.update(f.name.encode())
        h.update(json.dumps(pq.read_table(f).to_pylist(), ensure_ascii=False).encode())
    h.update((out / "rejects.jsonl").read_bytes())
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    h.update(json.dumps([m.get("counters"), m.get("splits"), m.get("records_total")], sort_keys=True).encode())
    return h.hexdigest()[:16]


def run_command(tree: str | None, command: str, src: Path, out: Path) -> tuple[float, str]:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.Popen(tree_cmd(tree, "module", "medmill.cli", [command, str(src), "--out", str(out)]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    output = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command} failed ({tree or 'this tree'}):\n{output.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, output_digest(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--corpus", default="generated", choices=["generated", "samples"])
    ap.add_argument("--batch", type=int, default=50_000, help="records per map-step call (the LocalExecutor's batch)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per step in one process; the best is reported")
    ap.add_argument("--rounds", type=int, default=2, help="processes per tree, alternating with the baseline's")
    ap.add_argument("--baseline-tree", help="another checkout of medmill (e.g. git archive main | tar -x -C DIR)")
    ap.add_argument("--tree", help="the checkout measured as 'this tree' (default: the installed one)")
    ap.add_argument("--commands", default="filter,dedup")
    ap.add_argument("--no-commands", action="store_true")
    ap.add_argument("--no-steps", action="store_true", help="only the whole commands")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medmill-curation-steps")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_steps(args.corpus, args.n, args.batch, args.repeat)))
        return

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    mine, base = None, None
    for _ in range(0 if args.no_steps else args.rounds):  # trees alternate, so both see the same load; each step's best is kept
        mine = best_of(mine, child_steps(args.tree, args))
        if args.baseline_tree:
            base = best_of(base, child_steps(args.baseline_tree, args))
    if mine is not None:
        print_steps(args, mine, base)
    if not args.no_commands and args.corpus == "generated":
        run_commands(args)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def print_steps(args: argparse.Namespace, mine: dict, base: dict | None) -> None:
    print(f"\n{args.corpus} corpus, {mine['records']:,} records, one core, batches of {args.batch:,}")
    print("CPU time of the process per record (best of the rounds)")
    print(f"{'step':34} {'µs/rec':>8} {'rec/s':>10}" + (f" {'base µs':>8} {'base rec/s':>10} {'speed-up':>8}  same output" if base else ""))
    for name, s in mine["steps"].items():
        us = s["s"] / max(s["n"], 1) * 1e6
        line = f"{name:34} {us:8.2f} {s['n'] / s['s']:10,.0f}"
        if base and name in base["steps"]:
            b = base["steps"][name]
            bus = b["s"] / max(b["n"], 1) * 1e6
            line += f" {bus:8.2f} {b['n'] / b['s']:10,.0f} {bus / us:7.2f}x  {'yes' if b['out'] == s['out'] else 'NO'}"
        print(line)
    map_steps = [k for k in mine["steps"] if not k.startswith("minhash") and not k.endswith("text_quality")]  # what filter runs
    total = sum(mine["steps"][k]["s"] for k in map_steps)
    line = f"{'map steps total':34} {total / mine['records'] * 1e6:8.2f} {mine['records'] / total:10,.0f}"
    if base:
        btotal = sum(base["steps"][k]["s"] for k in map_steps if k in base["steps"])
        line += f" {btotal / base['records'] * 1e6:8.2f} {base['records'] / btotal:10,.0f} {btotal / total:7.2f}x"
    print(line)


def run_commands(args: argparse.Namespace) -> None:
    src = write_input_dir(args.work / f"in-{args.n}", args.n)
    print(f"\nwhole commands on {src} ({args.n:,} records): wall and CPU (user+sys) time of the process, best of {args.rounds}")
    for command in args.commands.split(","):
        mine_runs, base_runs = [], []
        for _ in range(args.rounds):
            mine_runs.append(run_command(args.tree, command, src, args.work / f"out-{command}-this"))
            if args.baseline_tree:
                base_runs.append(run_command(args.baseline_tree, command, src, args.work / f"out-{command}-base"))
        wall, cpu = min(r[0] for r in mine_runs), min(r[1] for r in mine_runs)
        line = f"{command:8} this tree wall {wall:6.1f} s ({args.n / wall:7,.0f} rec/s), cpu {cpu:6.1f} s"
        if base_runs:
            b_wall, b_cpu = min(r[0] for r in base_runs), min(r[1] for r in base_runs)
            same = len({r[2] for r in mine_runs + base_runs}) == 1
            line += (f" | baseline wall {b_wall:6.1f} s ({args.n / b_wall:7,.0f} rec/s), cpu {b_cpu:6.1f} s"
                     f" | speed-up wall {b_wall / wall:.2f}x cpu {b_cpu / cpu:.2f}x | same output: {'yes' if same else 'NO'}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
