"""What the HTTP layer costs: generateContent with one output token against countTokens, under the same load.

Starts ``localgem serve`` on its default model (SmolLM2-135M) and sends, from ``--concurrency`` clients at
once over kept-alive connections, the same short prompt as countTokens and as generateContent with
``maxOutputTokens: 1`` (greedy), in alternating rounds. countTokens is the cheapest model request there is
(parse, authenticate, render the template, tokenize, answer); generateContent adds planning, admission,
quotas, the scheduler, one forward pass over what the slot does not hold yet, and the response. Prints, per
kind, requests/s and latency p50 / p99 over all rounds, and generateContent's p99 ÷ countTokens' p99
(issue target ≤ 2).

    .venv/bin/python bench/overhead.py [--concurrency 32] [--requests 320] [--rounds 3]

The load generator (asyncio, one httpx client) runs on the same cores as the server: its cost is the same
for both kinds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import httpx
from common import KEY, serve

MODEL = "gemini-2.5-flash"
PROMPT = {"contents": [{"role": "user", "parts": [{"text": "Say hello to the reader."}]}]}
KINDS = {
    "countTokens": PROMPT,
    "generateContent": {**PROMPT, "generationConfig": {"temperature": 0, "maxOutputTokens": 1}},
}


async def round_of(url: str, method: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """(requests/s, each request's latency in seconds)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": KEY}, limits=limits, timeout=600) as http:
        await asyncio.gather(*(http.post(f"/v1beta/models/{MODEL}:{method}", json=KINDS[method]) for _ in range(2)))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(requests):
            queue.put_nowait(index)
        latencies: list[float] = []

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                start = time.perf_counter()
                response = await http.post(f"/v1beta/models/{MODEL}:{method}", json=KINDS[method])
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"{method}: {response.status_code} {response.text[:300]}")

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return requests / (time.perf_counter() - began), latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=320, help="requests per round and kind")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        url, server = serve(data)
        try:
            rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
            latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for _ in range(args.rounds):
                for kind in KINDS:
                    rate, times = asyncio.run(round_of(url, kind, args.requests, args.concurrency))
                    rates[kind].append(rate)
                    latencies[kind].extend(times)
            for kind in KINDS:
                print(
                    f"{kind}: {statistics.median(rates[kind]):.1f} requests/s at {args.concurrency} clients, latency "
                    f"p50 {percentile(latencies[kind], 0.5) * 1000:.1f} ms, "
                    f"p99 {percentile(latencies[kind], 0.99) * 1000:.1f} ms"
                )
            ratio = percentile(latencies["generateContent"], 0.99) / percentile(latencies["countTokens"], 0.99)
            print(f"generateContent p99 ÷ countTokens p99: {ratio:.2f} (target ≤ 2)")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
