"""The code execution sandbox: how long a trivial script takes from "run this" to its result.

- plain: ``python -c`` in a subprocess (the same interpreter, no sandbox): the baseline.
- cold: a new bubblewrap sandbox per run, nothing imported ahead (``code_execution_warm: 0``).
- warm: a sandbox from the warm pool (started ahead, numpy/pandas/scipy/sympy/matplotlib imported),
  the pool refilled between runs, as on a server that is not saturated.
- warm, with pandas: the same, for a script that imports pandas (what the warm pool is for).
- sustained: sandboxes/s with ``--concurrency`` runs at once, back to back (the pool cannot keep up:
  most runs start cold).

Prints p50/p95 latency of each and its ratio to plain.

    .venv/bin/python bench/code_execution.py [--runs 30] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from localgem.sandbox.runner import OK, Sandbox

TRIVIAL = "print(sum(range(10)))"
PANDAS = "import pandas as pd\nprint(pd.DataFrame({'a': [1, 2]})['a'].sum())"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def plain(code: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


async def sandboxed(code: str, runs: int, warm: int) -> list[float]:
    box = Sandbox(warm=warm)
    await box.start()
    times = []
    try:
        for _ in range(runs):
            if warm:
                while len(box._pool) < warm:  # noqa: SLF001 - the bench waits for the refill it measures apart
                    await asyncio.sleep(0.05)
            start = time.perf_counter()
            result = await box.run(code)
            times.append(time.perf_counter() - start)
            assert result.outcome == OK, result
    finally:
        await box.close()
    return times


async def sustained(runs: int, concurrency: int) -> float:
    box = Sandbox(warm=concurrency, concurrency=concurrency)
    await box.start()
    await asyncio.sleep(3)
    start = time.perf_counter()
    results = await asyncio.gather(*(box.run(TRIVIAL) for _ in range(runs)))
    elapsed = time.perf_counter() - start
    await box.close()
    assert all(r.outcome == OK for r in results)
    return runs / elapsed


def report(name: str, times: list[float], baseline: float) -> None:
    p50, p95 = statistics.median(times), percentile(times, 95)
    print(f"{name:<24} p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   p50 ÷ plain {p50 / baseline:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    reason = Sandbox(warm=0).probe()
    if reason is not None:
        sys.exit(f"no sandbox here: {reason}")
    base = plain(TRIVIAL, args.runs)
    baseline = statistics.median(base)
    report("plain python -c", base, baseline)
    report("sandbox, cold", asyncio.run(sandboxed(TRIVIAL, args.runs, warm=0)), baseline)
    report("sandbox, warm pool", asyncio.run(sandboxed(TRIVIAL, args.runs, warm=1)), baseline)
    pandas_plain = plain(PANDAS, max(5, args.runs // 3))
    report("pandas: plain python -c", pandas_plain, baseline)
    report("pandas: sandbox, cold", asyncio.run(sandboxed(PANDAS, max(5, args.runs // 3), warm=0)), baseline)
    report("pandas: sandbox, warm", asyncio.run(sandboxed(PANDAS, max(5, args.runs // 3), warm=1)), baseline)
    rate = asyncio.run(sustained(args.runs * 2, args.concurrency))
    print(
        f"sustained: {rate:.1f} sandboxes/s ({args.concurrency} at once; "
        f"plain: {1 / baseline:.1f} runs/s one at a time)"
    )


if __name__ == "__main__":
    main()
