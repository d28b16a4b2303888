"""Embedding throughput: localgem's batchEmbedContents vs sentence-transformers ``encode`` in-process.

Same texts, same model (the packaged all-MiniLM-L6-v2), same run. The baseline calls
``SentenceTransformer.encode`` directly (batch size 32, its default); localgem is ``localgem serve``
in its own process, fed batchEmbedContents calls of 100 requests (Google's maximum) by
``--clients`` concurrent clients (each count in turn). Prints texts/s of each and localgem ÷
baseline (target ≥ 0.9). One client pays for Google's limit of 100 texts a call: encode sorts all
texts by length before batching them, a server sees 100 at a time (more padding); concurrent
clients' calls are computed together, which gives that back.

    .venv/bin/python bench/embeddings.py [--texts 2000] [--rounds 3] [--clients 1,4] [--src-before <src folder>]

``--src-before``: another checkout's src folder, served beside this tree and measured in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import KEY, serve

WORDS = (
    "the a model server local text vector search query document answer question river mountain city bread oven "
    "music violin market price rain forecast train delay bicycle repair garden flower library book orbit rocket "
    "team match goal coffee morning evening window light shadow memory network signal engine battery"
).split()


def sentences(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))).capitalize() + "." for _ in range(count)]


def baseline(texts: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    from localgem.models.packaged import all_minilm_l6_v2

    model = SentenceTransformer(str(all_minilm_l6_v2(None)), device="cpu")
    model.encode(texts[:64])  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - start)


def through_localgem(url: str, texts: list[str], clients: int) -> float:
    chunks = [texts[i : i + 100] for i in range(0, len(texts), 100)]

    def send(chunk: list[str]) -> None:
        body = {
            "requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}} for t in chunk]
        }
        answer = httpx.post(
            f"{url}/v1beta/models/gemini-embedding-001:batchEmbedContents",
            json=body,
            headers={"x-goog-api-key": KEY},
            timeout=600,
        )
        answer.raise_for_status()
        assert len(answer.json()["embeddings"]) == len(chunk)

    send(texts[:64])  # warm-up: loads the model
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, chunks))
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--src-before", help="another checkout's src folder, served in the same rounds")
    args = parser.parse_args()
    texts = sentences(args.texts)
    clients = [int(c) for c in args.clients.split(",")]
    trees = {"this tree": None, **({"--src-before": args.src_before} if args.src_before else {})}
    with contextlib.ExitStack() as stack:
        servers = {}
        for tree, src in trees.items():
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
            url, process = serve(data_dir, src=src, preload="all-minilm-l6-v2")
            stack.callback(process.wait)
            stack.callback(process.terminate)
            servers[tree] = url
        ours: dict[tuple[str, int], list[float]] = {(t, c): [] for t in trees for c in clients}
        theirs = []
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits all alike
            theirs.append(baseline(texts))
            for tree, url in servers.items():
                for count in clients:
                    ours[tree, count].append(through_localgem(url, texts, count))
    b = statistics.median(theirs)
    print(f"{len(texts)} texts, median of {args.rounds} rounds (range in brackets)")
    print(f"sentence-transformers encode, in-process: {b:8.1f} texts/s")
    for (tree, count), found in ours.items():
        a = statistics.median(found)
        print(
            f"localgem batchEmbedContents ({tree}), {count} client(s): {a:8.1f} texts/s   ratio {a / b:.2f}x "
            f"({min(found) / b:.2f}-{max(found) / b:.2f}; target >= 0.9)"
        )


if __name__ == "__main__":
    main()
