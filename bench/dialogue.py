"""Rows per second and peak memory of the whole `medmill build-dialogue` command on a generated
Toyhom-format CSV (gb18030, quoted multi-line answers, 无 asks, a few ragged rows, 5% exact duplicate
rows as in the real sample), 200k rows by default.

Baseline: `pandas.read_csv(encoding="gb18030")` of the same file, i.e. only decoding and CSV parsing,
what the corpora's own converters do before their (broken) cleaning. The command runs in a child
process; its peak RSS comes from getrusage(RUSAGE_CHILDREN). Stages come from the manifest's timings.
Run: python bench/dialogue.py [--rows 200000] [--dedup/--no-dedup] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dialogue.corpora import write_toyhom_csv  # noqa: E402


def run_child(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process (ru_maxrss is the largest child so far)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--keep", type=Path, default=None, help="write the CSV and the dataset dir here")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench_dialogue_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "内科.csv"
    t = time.perf_counter()
    wrote = write_toyhom_csv(src, a.rows, ragged_every=10_000, duplicate_every=20)
    print(f"generated {wrote['rows']:,} rows ({src.stat().st_size / 2**20:,.1f} MiB gb18030) in {time.perf_counter() - t:.1f}s")

    # baseline first: the child-rusage peak only grows, so the smaller process must run first
    base_code = f"import pandas as pd; df = pd.read_csv({str(src)!r}, encoding='gb18030', on_bad_lines='skip'); print(len(df))"
    base_wall, base_peak = run_child([sys.executable, "-c", base_code])
    out = work / "out"
    cmd = [sys.executable, "-m", "medmill.cli", "build-dialogue", str(src), "--out", str(out), "--val-size", "0.01",
           "--department-prompt"] + ([] if a.dedup else ["--no-dedup"])
    wall, peak = run_child(cmd)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    timings = manifest["timings"]
    print(f"pandas.read_csv baseline: {base_wall:.1f}s, {wrote['rows'] / base_wall:,.0f} rows/s, peak RSS {base_peak:,.0f} MiB")
    print(f"medmill build-dialogue:   {wall:.1f}s, {wrote['rows'] / wall:,.0f} rows/s, peak RSS {peak:,.0f} MiB "
          f"(dedup {'on' if a.dedup else 'off'})")
    print(f"ratio command / baseline: time x{wall / base_wall:.1f}, memory x{peak / base_peak:.1f}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if not k.startswith("curate."))
    curate = ", ".join(f"{k[7:]} {v:.1f}s" for k, v in timings.items() if k.startswith("curate."))
    print(f"stages: {stages}")
    print(f"curation steps: {curate}")
    print(f"records written {manifest['records_total']:,}; rejects {manifest['rejects_by_reason']}")


if __name__ == "__main__":
    main()
