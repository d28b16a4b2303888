"""File Search end to end, against ``localgem serve`` in its own process (SQLite and its sidecar index):

1. Ingestion: a ~600-chunk document uploaded to a store, timed until its operation is done, as chunks per
   second; baseline: the same chunk texts through the embedding model alone (sentence-transformers
   ``encode``, in this process). Target: localgem ÷ model alone ≥ 0.8.
2. Overhead: time to first streamed chunk of ``streamGenerateContent`` with the fileSearch tool vs the
   same request with the passages it retrieved pasted into the system instruction by hand (the prompt
   the model then reads is the same). Pairs alternate which goes first, so the server's prefix cache
   favours neither. Target: median overhead ≤ 100 ms.
3. Quality: a labelled set written here (40 made-up facts in 40 documents, one question each, worded
   differently from its fact), hit@5 of vector search alone, keyword search alone, and the fused
   ranking the fileSearch tool uses.

    .venv/bin/python bench/file_search.py [--pairs 10] [--parts ingestion,overhead,quality]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import KEY, serve
from embeddings import WORDS

HEADERS = {"x-goog-api-key": KEY}
MODEL = "gemini-2.5-flash"

NAMES = "Ada Bram Cleo Dov Esme Finn Gala Hugo Iris Jude".split()
THINGS = [
    ("keeps {n} goats on a farm near {place}", "How many goats does {name} have, and where?"),
    ("repairs antique clocks in a workshop in {place}", "Who fixes old clocks, and in which town?"),
    ("sails a red boat called the {n}th Wave out of {place}", "What is the name of {name}'s boat?"),
    ("bakes {n} loaves of rye bread every dawn in {place}", "How much bread does {name} make each morning?"),
]
PLACES = "Tromso Lyon Oaxaca Kyoto Tartu Perth Cusco Bergen Porto Hue".split()


def labelled() -> list[tuple[str, str, str]]:
    """(document name, fact, question) × 40."""
    rows = []
    for i in range(40):
        name, place, n = NAMES[i % 10], PLACES[(i * 3 + i // 10) % 10], 3 + i
        fact, question = THINGS[i // 10]
        rows.append(
            (
                f"fact-{i}",
                f"{name} {fact.format(n=n, place=place)}.",
                question.format(name=name),
            )
        )
    return rows


def filler(words: int, seed: int) -> str:
    rng = random.Random(seed)
    sentences = []
    while words > 0:
        size = rng.randint(8, 24)
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(size)).capitalize() + ".")
        words -= size
    return " ".join(sentences)


def wait_done(url: str, operation: dict, poll: float = 0.05) -> dict:
    while not operation.get("done"):
        time.sleep(poll)
        operation = httpx.get(f"{url}/v1beta/{operation['name']}", headers=HEADERS).json()
    return operation


def upload(url: str, store: str, text: str, name: str) -> dict:
    reply = httpx.post(
        f"{url}/upload/v1beta/{store}:uploadToFileSearchStore",
        content=text.encode(),
        headers={**HEADERS, "content-type": "text/plain", "x-goog-upload-file-name": f"{name}.txt"},
        timeout=600,
    )
    reply.raise_for_status()
    return reply.json()


def ingestion(url: str, data_dir: str) -> None:
    store = httpx.post(f"{url}/v1beta/fileSearchStores", json={"displayName": "ingest"}, headers=HEADERS).json()
    warm = wait_done(url, upload(url, store["name"], filler(200, 1), "warm-up"))  # loads the embedder
    assert "error" not in warm, warm
    text = filler(75_000, 2)
    started = time.perf_counter()
    done = wait_done(url, upload(url, store["name"], text, "big"), poll=0.5)
    elapsed = time.perf_counter() - started
    assert "error" not in done, done
    document = done["response"]["documentName"]
    with sqlite3.connect(Path(data_dir) / "index.sqlite") as db:
        texts = [t for (t,) in db.execute("SELECT text FROM chunks WHERE document = ? ORDER BY id", (document,))]
    from sentence_transformers import SentenceTransformer

    from localgem.models.packaged import all_minilm_l6_v2

    model = SentenceTransformer(str(all_minilm_l6_v2(None)), device="cpu")
    model.encode(texts[:64])
    begin = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    alone = len(texts) / (time.perf_counter() - begin)
    served = len(texts) / elapsed
    print(f"ingestion: {len(texts)} chunks; localgem {served:.1f} chunks/s (upload to ACTIVE), "
          f"model alone {alone:.1f} chunks/s, ratio {served / alone:.2f}")  # fmt: skip


def first_chunk_seconds(url: str, body: dict) -> float:
    started = time.perf_counter()
    with httpx.stream(
        "POST", f"{url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", json=body, headers=HEADERS, timeout=120
    ) as reply:
        for line in reply.iter_lines():
            if line.startswith("data:"):
                return time.perf_counter() - started
    raise RuntimeError("no chunk")


def overhead(url: str, pairs: int) -> str:
    store = httpx.post(f"{url}/v1beta/fileSearchStores", json={"displayName": "facts"}, headers=HEADERS).json()
    facts = labelled()
    for n, (document, fact, _) in enumerate(facts):
        wait_done(url, upload(url, store["name"], fact + " " + filler(60, 100 + n), document))
    config = {"maxOutputTokens": 1, "temperature": 0}
    tool = [{"fileSearch": {"fileSearchStoreNames": [store["name"]], "topK": 5}}]
    from localgem.file_search.retriever import CONTEXT_HEADER

    extra = []
    for n, (_, _, question) in enumerate(facts[:pairs]):
        contents = [{"role": "user", "parts": [{"text": question}]}]
        grounded = httpx.post(
            f"{url}/v1beta/models/{MODEL}:generateContent",
            json={"contents": contents, "tools": tool, "generationConfig": config},
            headers=HEADERS,
            timeout=120,
        ).json()
        chunks = grounded["candidates"][0]["groundingMetadata"]["groundingChunks"]
        passages = "\n".join(
            f"[{k + 1}] ({c['retrievedContext']['title']}) {c['retrievedContext']['text']}"
            for k, c in enumerate(chunks)
        )
        by_hand = {
            "contents": contents,
            "systemInstruction": {"parts": [{"text": CONTEXT_HEADER + passages}]},
            "generationConfig": config,
        }
        with_tool = {"contents": contents, "tools": tool, "generationConfig": config}
        # a fresh question each pair; the first call of a pair warms the prompt's prefix for the second
        order = [(with_tool, True), (by_hand, False)] if n % 2 else [(by_hand, False), (with_tool, True)]
        times = {}
        for body, is_tool in order:
            times[is_tool] = first_chunk_seconds(url, body)
        extra.append(times[True] - times[False])
    print(f"overhead: time to first chunk, fileSearch minus passages pasted by hand, over {pairs} pairs: "
          f"median {statistics.median(extra) * 1000:.0f} ms, max {max(extra) * 1000:.0f} ms")  # fmt: skip
    return store["name"]


def quality(url: str, store: str, data_dir: str) -> None:
    import asyncio

    from localgem.retrieval.fusion import fuse
    from localgem.retrieval.sqlite_index import SqliteChunkIndex

    facts = labelled()
    embedder_texts = [q for _, _, q in facts]
    from sentence_transformers import SentenceTransformer

    from localgem.models.packaged import all_minilm_l6_v2

    model = SentenceTransformer(str(all_minilm_l6_v2(None)), device="cpu")
    vectors = model.encode(embedder_texts, normalize_embeddings=True)

    async def rank() -> dict[str, float]:
        index = await SqliteChunkIndex(Path(data_dir) / "index.sqlite").open()
        hits = {"vector": 0, "keyword": 0, "fused": 0}
        try:
            run = index._thread.run  # the index's own thread: its private rankings, for this comparison only
            for (document, _, question), vector in zip(facts, vectors, strict=True):
                similar = await run(index._similar, [store], vector, 20, None)
                words = await run(index._keywords, [store], question, 20, None)
                rows = await run(index._rows, list({r for r, _ in similar} | set(words)))
                doc_of = {row: value[1].rsplit("/", 1)[1] for row, value in rows.items()}
                titles = {d["name"].rsplit("/", 1)[1]: d["displayName"] for d in documents}
                wanted = next(k for k, v in titles.items() if v == f"{document}.txt")
                rankings = {
                    "vector": [r for r, _ in similar][:5],
                    "keyword": words[:5],
                    "fused": [r for r, _ in fuse([[r for r, _ in similar], words], limit=5)],
                }
                for kind, ranked in rankings.items():
                    hits[kind] += any(doc_of[r] == wanted for r in ranked)
        finally:
            await index.close()
        return {k: v / len(facts) for k, v in hits.items()}

    documents = []
    token = None
    while True:
        page = httpx.get(
            f"{url}/v1beta/{store}/documents", params={"pageSize": 20, "pageToken": token}, headers=HEADERS
        ).json()
        documents += page.get("documents", [])
        token = page.get("nextPageToken")
        if not token:
            break
    found = asyncio.run(rank())
    print(f"quality (40 questions, hit@5): vector {found['vector']:.2f}, keyword {found['keyword']:.2f}, "
          f"fused {found['fused']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--parts", default="ingestion,overhead,quality")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as data_dir:
        url, process = serve(data_dir, batch_poll_seconds="0.2")
        try:
            if "ingestion" in parts:
                ingestion(url, data_dir)
            if parts & {"overhead", "quality"}:
                store = overhead(url, args.pairs)
                if "quality" in parts:
                    quality(url, store, data_dir)
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
