"""Batch mode vs online, same run: throughput of N short requests, and online latency during a batch.

1. Throughput: N short requests as one batchGenerateContent vs the same N sent online by 8
   concurrent clients, alternately (--rounds of each). Prints the median requests/s of each and
   batch ÷ online (target ≥ 1.0).
2. Latency: time to first token of online streaming requests, one at a time, with the server idle
   and while a batch of N runs. Prints medians and with ÷ without (target ≤ 1.5).

    .venv/bin/python bench/batch.py [--requests 500]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import KEY, first_token_seconds, serve

HEADERS = {"x-goog-api-key": KEY}
CONFIG = {"temperature": 0, "maxOutputTokens": 16}


def request(i: int) -> dict:
    return {
        "contents": [{"parts": [{"text": f"Give one word that rhymes with number {i}."}]}],
        "generationConfig": CONFIG,
    }


def run_batch(url: str, count: int, wait: bool = True) -> tuple[str, float]:
    body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": request(i)} for i in range(count)]}}}}
    start = time.perf_counter()
    name = httpx.post(f"{url}/v1beta/models/gemini-2.5-flash:batchGenerateContent", json=body, headers=HEADERS).json()[
        "name"
    ]
    while wait and not httpx.get(f"{url}/v1beta/{name}", headers=HEADERS).json()["done"]:
        time.sleep(0.2)
    return name, time.perf_counter() - start


def run_online(url: str, count: int) -> float:
    def send(i: int) -> None:
        answer = httpx.post(
            f"{url}/v1beta/models/gemini-2.5-flash:generateContent", json=request(i), headers=HEADERS, timeout=600
        )
        answer.raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(count)))
    return time.perf_counter() - start


def first_token(url: str, i: int) -> float:
    body = {"contents": [{"parts": [{"text": f"Tell me a fact about the number {i}."}]}], "generationConfig": CONFIG}
    return first_token_seconds(url, body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        url, process = serve(data_dir, batch_poll_seconds="0.2")
        try:
            run_online(url, 8)  # warm-up
            onlines, batches = [], []
            for _ in range(args.rounds):
                onlines.append(run_online(url, args.requests))
                batches.append(run_batch(url, args.requests)[1])
            online, batch = statistics.median(onlines), statistics.median(batches)
            idle = [first_token(url, i) for i in range(args.probes)]
            name, _ = run_batch(url, args.requests, wait=False)
            time.sleep(2)
            busy = [first_token(url, i) for i in range(args.probes)]
            still_running = not httpx.get(f"{url}/v1beta/{name}", headers=HEADERS).json()["done"]
        finally:
            process.terminate()
            process.wait()
    n = args.requests
    print(f"{n} short requests (maxOutputTokens 16), median of {args.rounds} rounds each")
    print(f"online, 8 concurrent clients: {n / online:6.2f} requests/s")
    print(f"one batch:                    {n / batch:6.2f} requests/s   ratio {online / batch:.2f} (target >= 1.0)")
    a, b = statistics.median(busy), statistics.median(idle)
    print(f"online time to first token, idle:          {b * 1000:7.1f} ms")
    print(f"online time to first token, during batch:  {a * 1000:7.1f} ms   ratio {a / b:.2f} (target <= 1.5)")
    print(f"(the batch was still running after the probes: {still_running})")


if __name__ == "__main__":
    main()
