"""The SQLite chunk index (sqlite-vec + FTS5): exact vector search, keywords, fusion, filters, deletion."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from localgem.retrieval.index import IndexedChunk
from localgem.retrieval.metadata_filter import parse
from localgem.retrieval.sqlite_index import SqliteChunkIndex

DIMS = 16


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def chunks(store: str, document: str, texts: list[str], vectors: np.ndarray, **metadata) -> list[IndexedChunk]:
    return [
        IndexedChunk(store, f"{store}/documents/{document}", f"{store}/documents/{document}/chunks/{i}", t, v, metadata)
        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]


@pytest.fixture
def index(tmp_path: Path):
    opened = asyncio.run(SqliteChunkIndex(tmp_path / "index.sqlite").open())
    yield opened
    asyncio.run(opened.close())


def test_vector_search_is_exact(index: SqliteChunkIndex) -> None:
    rng = np.random.default_rng(0)
    vectors = np.stack([unit(v) for v in rng.normal(size=(2000, DIMS))])
    asyncio.run(index.add(chunks("s", "d", [f"chunk {i}" for i in range(2000)], vectors)))
    for q in rng.normal(size=(5, DIMS)):
        query = unit(q)
        exact = np.argsort(-(vectors @ query))[:10]
        found = asyncio.run(index._thread.run(index._similar, ["s"], query, 10, None))
        assert [int(name) - 1 for name, _ in found] == list(exact)  # rowids are insertion order, from 1
        assert found[0][1] == pytest.approx(float(vectors[exact[0]] @ query), abs=1e-5)


def test_hybrid_search_finds_by_meaning_and_by_words_and_keeps_stores_apart(index: SqliteChunkIndex) -> None:
    basis = np.eye(DIMS, dtype=np.float32)
    asyncio.run(
        index.add(
            chunks("a", "d1", ["about apples", "zebra crossing rules", "something else"], basis[:3])
            + chunks("b", "d2", ["zebra in store b"], basis[1:2])
        )
    )
    hits = asyncio.run(index.search(["a"], basis[0], "zebra", k=2))
    assert {h.text for h in hits} == {"about apples", "zebra crossing rules"}  # one by vector, one by word
    assert all(h.store == "a" for h in hits)
    assert hits[0].similarity == pytest.approx(1.0) or hits[1].similarity == pytest.approx(1.0)
    both = asyncio.run(index.search(["a", "b"], basis[1], "zebra", k=5))
    assert {h.store for h in both} == {"a", "b"}
    assert asyncio.run(index.search(["c"], basis[0], "zebra", k=3)) == []


def test_a_selective_filter_still_finds_k_chunks(index: SqliteChunkIndex) -> None:
    rng = np.random.default_rng(1)
    vectors = np.stack([unit(v) for v in rng.normal(size=(300, DIMS))])
    for n in range(30):  # 30 documents of 10 chunks; only document 7 is by Graves
        author = "Robert Graves" if n == 7 else "someone"
        part = slice(n * 10, n * 10 + 10)
        texts = [f"text {n}-{i}" for i in range(10)]
        asyncio.run(index.add(chunks("s", f"d{n}", texts, vectors[part], author=author, year=1900 + n)))
    condition = parse('author = "Robert Graves"')
    hits = asyncio.run(index.search(["s"], vectors[0], "", k=5, condition=condition))
    assert len(hits) == 5 and all(h.document == "s/documents/d7" for h in hits)
    assert (
        asyncio.run(index.search(["s"], vectors[0], "text", k=50, condition=parse("year >= 1928")))[0].metadata["year"]
        >= 1928
    )


def test_deleting_removes_vectors_and_words_and_adding_again_replaces(tmp_path: Path, index: SqliteChunkIndex) -> None:
    basis = np.eye(DIMS, dtype=np.float32)
    asyncio.run(index.add(chunks("s", "d1", ["alpha words", "beta words"], basis[:2])))
    asyncio.run(index.add(chunks("s", "d2", ["gamma words"], basis[2:3])))
    asyncio.run(index.add(chunks("s", "d2", ["gamma again"], basis[2:3])))  # the same chunk name: replaced
    assert asyncio.run(index.count("s")) == 3
    assert asyncio.run(index.delete_documents("s", ["s/documents/d1"])) == 2
    hits = asyncio.run(index.search(["s"], basis[0], "alpha beta gamma", k=5))
    assert [h.text for h in hits] == ["gamma again"]
    assert asyncio.run(index.delete_store("s")) == 1
    assert asyncio.run(index.search(["s"], basis[2], "gamma", k=5)) == []
    db = index._db
    assert db.execute("SELECT count(*) FROM chunk_vectors_16").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM chunk_words WHERE chunk_words MATCH 'gamma'").fetchone()[0] == 0


def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    basis = np.eye(DIMS, dtype=np.float32)

    async def first() -> None:
        index = await SqliteChunkIndex(tmp_path / "i.sqlite").open()
        await index.add(chunks("s", "d", ["kept text"], basis[:1]))
        await index.close()

    async def second() -> list:
        index = await SqliteChunkIndex(tmp_path / "i.sqlite").open()
        try:
            return await index.search(["s"], basis[0], "kept", k=1)
        finally:
            await index.close()

    asyncio.run(first())
    assert [h.text for h in asyncio.run(second())] == ["kept text"]
