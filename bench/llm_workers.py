"""Wall time of a book-qa build on one process vs `--workers N` vs `--executor ray`, against the local
test LLM server with a fixed latency (the scripted book-qa model of tests/book_lit_fake_llm.py).

    python bench/llm_workers.py [--copies 8] [--latency 0.2] [--concurrency 16] [--workers 2] [--no-ray]

The inputs are `--copies` variants of examples/texts (each sentence tagged with its copy, so every
request differs). The server runs in its own process (it does not share the builds' GIL); each build is
a fresh `medmill build-book-qa` process with its own out dir and cache, so every run pays every call.
The total concurrency is the same in every run (each worker takes its share), so workers cannot make
the calls faster than one process: what they can win is the CPU work between calls; what they cost is
starting workers and an engine per slice. Prints wall time, the build's generate time, requests
answered, the server's peak requests in flight, and the ratio to one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SERVER = """
import sys, threading
from tests.book_lit_fake_llm import respond
from tests.llm_server import FakeLLMServer
srv = FakeLLMServer(responder=respond, latency=float(sys.argv[1])).start()
print("PORT", srv.port, flush=True)
for line in sys.stdin:  # "stats" -> served and peak; EOF -> stop
    print(sum(srv.served.values()), srv.peak_in_flight, flush=True)
    srv.served.clear(); srv.peak_in_flight = 0
"""


def make_inputs(root: Path, copies: int) -> Path:
    for k in range(copies):
        for f in sorted((REPO / "examples" / "texts").iterdir()):
            if f.suffix not in (".md", ".txt") or f.name == "README":
                continue
            data = f.read_bytes()
            enc = "gb18030" if "gb18030" in f.name else "utf-8"
            text = data.decode(enc).replace("。", f"（第{k + 1}册）。")
            (root / f"{k:02d}_{f.name}").write_bytes(text.encode(enc))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "bench"}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.latency)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert server.stdout is not None and server.stdin is not None
    url = f"http://127.0.0.1:{int(server.stdout.readline().split()[1])}/v1"
    runs = [("1 process (--executor memory)", ["--executor", "memory"]),
            (f"--workers {args.workers}", ["--workers", str(args.workers)])]
    if not args.no_ray:
        try:
            import ray  # noqa: F401

            runs.append((f"--executor ray --workers {args.workers}", ["--executor", "ray", "--workers", str(args.workers)]))
        except ImportError:
            print("(ray not installed: no ray run)")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "in").mkdir()
            inputs = make_inputs(Path(tmp) / "in", args.copies)
            for n, (name, flags) in enumerate(runs):
                out = Path(tmp) / f"out{n}"
                cmd = [sys.executable, "-m", "medmill.cli", "build-book-qa", str(inputs), "--out", str(out),
                       "--llm-base-url", url, "--llm-model", "fake", "--concurrency", str(args.concurrency),
                       "--question-dedup", "0.95", *flags]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
                wall = time.perf_counter() - t0
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed: {done.stderr[-1500:]}")
                server.stdin.write("stats\n")
                server.stdin.flush()
                served, peak = map(int, server.stdout.readline().split())
                manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
                rows.append((name, wall, manifest["timings"]["generate"], served, peak, manifest["records_total"]))
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    base = rows[0][1]
    print(f"book-qa, {args.copies} copies of examples/texts, latency {args.latency}s, concurrency {args.concurrency}")
    print(f"{'run':38} {'wall s':>7} {'generate s':>10} {'requests':>8} {'peak':>5} {'records':>7} {'vs 1 proc':>9}")
    for name, wall, gen, served, peak, records in rows:
        print(f"{name:38} {wall:7.2f} {gen:10.2f} {served:8d} {peak:5d} {records:7d} {base / wall:8.2f}x")


if __name__ == "__main__":
    main()
