"""Generation beside the process's other models: one stream's decode speed before and after the server embedded
some text (PyTorch in the same process; see ``localgem.one_thread``).

    .venv/bin/python bench/neighbours.py [--rounds 3] [--src-before <another checkout's src folder>]

Each round starts a fresh server (SmolLM2, greedy, 128 tokens a request, the median of 3 requests), measures,
makes two embedContent calls, and measures again. ``--src-before`` serves another source tree the same way in
the same rounds (e.g. a worktree of the commit before a change), for a before-and-after in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import httpx
from common import KEY, serve

HEADERS = {"x-goog-api-key": KEY}
BODY = {
    "contents": [{"parts": [{"text": "Write a long story about a fox who finds a lantern in the snow."}]}],
    "generationConfig": {"maxOutputTokens": 128, "temperature": 0},
}


def tokens_per_second(url: str) -> float:
    speeds = []
    for _ in range(3):
        start = time.perf_counter()
        reply = httpx.post(
            f"{url}/v1beta/models/gemini-2.5-flash:generateContent", json=BODY, headers=HEADERS, timeout=600
        )
        reply.raise_for_status()
        speeds.append(reply.json()["usageMetadata"]["candidatesTokenCount"] / (time.perf_counter() - start))
    return statistics.median(speeds)


def embed(url: str) -> None:
    for _ in range(2):
        body = {
            "requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}}
                for t in ("a fox", "a lantern in the snow")
            ]
        }
        httpx.post(
            f"{url}/v1beta/models/gemini-embedding-001:batchEmbedContents", json=body, headers=HEADERS, timeout=600
        ).raise_for_status()


def one_round(src: str | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        url, process = serve(data_dir, src=src)
        try:
            tokens_per_second(url)  # the model's first load
            before = tokens_per_second(url)
            embed(url)
            return before, tokens_per_second(url)
        finally:
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--src-before", help="another checkout's src folder, served in the same rounds")
    args = parser.parse_args()
    variants = {"this tree": None, **({"--src-before": args.src_before} if args.src_before else {})}
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, src in variants.items():
            found[name].append(one_round(src))
    print(f"SmolLM2, greedy, 128 tokens a request, one stream; median of {args.rounds} rounds, fresh servers")
    for name, rounds in found.items():
        before = statistics.median(r[0] for r in rounds)
        after = statistics.median(r[1] for r in rounds)
        ratios = [r[1] / r[0] for r in rounds]
        print(
            f"  {name:12} before embedding {before:6.1f} tok/s, after {after:6.1f} tok/s: "
            f"after / before {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
