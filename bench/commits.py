"""This tree against an earlier commit, in one run: did a change cost speed?

Both trees serve the same model from their own process (same venv, each its own data dir); the rounds
alternate between them so that the machine's noise falls on both. Per round and tree:
throughput of 1 and 8 concurrent streams (as ``throughput.py`` measures it), a chat's second turn
time to first token warm vs cold (``throughput.py`` (d)), and time to first token with a cached
content vs uncached (``caching.py``). Prints each figure for both trees and new ÷ old.

    .venv/bin/python bench/commits.py --baseline ecc3993 [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
from caching import CONFIG, DOCUMENT, HEADERS, QUESTIONS
from common import first_token_seconds, serve
from throughput import TOPICS, chat_ttft, streams

MODEL = "smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parent.parent


def checkout(rev: str, into: str) -> str:
    """The source tree of ``rev`` (its ``src`` folder), without touching this work tree."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return str(Path(into) / "src")


def measure(url: str, tokens: int, round_: int) -> dict[str, float]:
    figures = {
        "1 stream tok/s": asyncio.run(streams(url, MODEL, tokens, TOPICS[:4], concurrent=False)),
        "8 streams tok/s": asyncio.run(streams(url, MODEL, tokens, TOPICS[:8], concurrent=True)),
    }
    figures["chat warm ttft s"], figures["chat cold ttft s"] = asyncio.run(chat_ttft(url, MODEL))
    created = httpx.post(
        f"{url}/v1beta/cachedContents",
        json={"model": f"models/{MODEL}", "contents": [{"role": "user", "parts": [{"text": DOCUMENT}]}]},
        headers=HEADERS,
        timeout=600,
    ).json()
    question = {"role": "user", "parts": [{"text": QUESTIONS[round_ % len(QUESTIONS)]}]}
    document = {"role": "user", "parts": [{"text": f"[{uuid.uuid4()}]\n{DOCUMENT}"}]}
    uncached = {"contents": [document, question], "generationConfig": CONFIG}
    figures["uncached ttft s"] = first_token_seconds(url, uncached)
    body = {"cachedContent": created["name"], "contents": [question], "generationConfig": CONFIG}
    figures["cached ttft s"] = first_token_seconds(url, body)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True, help="a git revision to compare this tree with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"old": checkout(args.baseline, scratch), "new": str(ROOT / "src")}
        servers = {}
        for name, src in trees.items():
            data_dir = Path(scratch) / f"data-{name}"  # the trees' databases may differ in schema
            data_dir.mkdir()
            servers[name] = serve(str(data_dir), src=src, preload=MODEL, max_queue="64")
        try:
            for round_ in range(args.rounds):
                for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                    for figure, value in measure(servers[name][0], args.tokens, round_).items():
                        results[name].setdefault(figure, []).append(value)
        finally:
            for _, process in servers.values():
                process.terminate()
                process.wait()
    print(f"{MODEL}, greedy, {args.tokens} tokens per request, median of {args.rounds} alternating rounds")
    print(f"  {'':24} {args.baseline:>10} {'this tree':>10} {'new/old':>8}")
    for figure in results["old"]:
        old, new = statistics.median(results["old"][figure]), statistics.median(results["new"][figure])
        print(f"  {figure:24} {old:10.3f} {new:10.3f} {new / old:8.2f}")


if __name__ == "__main__":
    main()
