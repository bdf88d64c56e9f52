"""Throughput of the LLM engine against a local OpenAI-compatible server with a fixed latency.

    python bench/llm_engine.py [--requests 2000] [--concurrency 32] [--latency 0.2] [--baseline 20]

Starts tests/llm_server.py in its own process (a remote server does not share our GIL), then runs
`--requests` distinct chat requests through LLMEngine with `--concurrency` in flight, and prints the
achieved req/s, the ideal concurrency/latency, their ratio (target >= 0.90 at concurrency 32), and
the speed-up over a one-at-a-time loop with the sync openai client (how MedicalGPT-zh's scripts call
the API) measured in the same run. The bare async SDK under a semaphore, run the same way, shows what
this machine allows at all (other processes compete for its cores); a re-run of the same requests
shows the cache replay rate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "llm_server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the test server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def requests_for(n: int, tag: str) -> list:
    from medmill.builders.llm.types import LLMRequest

    return [LLMRequest(key=f"{tag}{i}", messages=[{"role": "user", "content": f"{tag} 问题 {i}：高血压患者如何控制饮食？"}])
            for i in range(n)]


def baseline(base_url: str, n: int) -> float:
    """req/s of a plain loop: one request, wait for it, the next."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    t0 = time.perf_counter()
    for i in range(n):
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": f"baseline {i}"}])
    client.close()
    return n / (time.perf_counter() - t0)


def sdk_gather(base_url: str, n: int, concurrency: int) -> float:
    """req/s of the bare async SDK under a semaphore (no cache, retries, validation): the engine's ceiling
    on this machine, so its own overhead can be told apart from the machine's."""
    import asyncio

    from openai import AsyncOpenAI

    async def run() -> float:
        client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await client.chat.completions.create(model="fake", messages=[{"role": "user", "content": f"sdk {i}"}])

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(concurrency, concurrency + n)))
        elapsed = time.perf_counter() - t0
        await client.close()
        return n / elapsed

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--baseline", type=int, default=20, help="requests in the one-at-a-time loop")
    args = ap.parse_args()

    from medmill.builders.llm.engine import LLMEngine
    from medmill.builders.llm.types import LLMSettings

    proc, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = LLMSettings(base_url=base_url, model="fake", concurrency=args.concurrency, timeout=30)
            with LLMEngine(settings, Path(tmp)) as engine:
                engine.run(requests_for(args.concurrency, "warm-up"))  # connections and imports, not measured
                reqs = requests_for(args.requests, "bench")
                c0, t0 = time.process_time(), time.perf_counter()
                results = engine.run(reqs)
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0
                assert all(r.ok for r in results), [r.message for r in results if not r.ok][:3]
                t1 = time.perf_counter()
                engine.run(reqs)
                replay = time.perf_counter() - t1
            base_rps = baseline(base_url, args.baseline)
            sdk_rps = sdk_gather(base_url, args.requests, args.concurrency)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    achieved = args.requests / wall
    ideal = args.concurrency / args.latency
    print(f"requests            {args.requests} (concurrency {args.concurrency}, server latency {args.latency:g} s)")
    print(f"wall time           {wall:.2f} s")
    print(f"achieved            {achieved:.1f} req/s")
    print(f"ideal               {ideal:.1f} req/s (concurrency / latency)")
    print(f"ratio to ideal      {achieved / ideal:.3f} (target >= 0.90)")
    print(f"bare async SDK      {sdk_rps:.1f} req/s (semaphore only; ratio {sdk_rps / ideal:.3f}; engine / bare {achieved / sdk_rps:.2f})")
    print(f"one-at-a-time loop  {base_rps:.2f} req/s ({args.baseline} requests, sync openai client)")
    print(f"speed-up vs loop    {achieved / base_rps:.1f}x")
    print(f"cache replay        {args.requests / replay:.0f} req/s (the same {args.requests} requests again, 0 sent)")
    print(f"client CPU          {cpu / args.requests * 1000:.2f} ms per request ({cpu / wall:.0%} of one core)")
    print(f"machine             {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other work slows both loops)")


if __name__ == "__main__":
    main()
