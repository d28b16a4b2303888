"""The SQLite chunk index (sqlite-vec + FTS5): exact vector search, keywords, fusion, filters, deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from localgem.retrieval.index import ChunkIndex, IndexedChunk
from localgem.retrieval.metadata_filter import parse
from localgem.retrieval.pg_index import PgChunkIndex
from localgem.retrieval.sqlite_index import SqliteChunkIndex
from tests.pgvector_server import new_database

DIMS = 16


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def chunks(store: str, document: str, texts: list[str], vectors: np.ndarray, **metadata) -> list[IndexedChunk]:
    return [
        IndexedChunk(store, f"{store}/documents/{document}", f"{store}/documents/{document}/chunks/{i}", t, v, metadata)
        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]


class Opened:
    """An index, and a way to count what its tables still hold (for the deletion test)."""

    def __init__(self, index: ChunkIndex, rows) -> None:
        self.index = index
        self.rows = rows


@pytest.fixture(params=["sqlite", "postgresql"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    if request.param == "sqlite":
        index = asyncio.run(SqliteChunkIndex(tmp_path / "index.sqlite").open())

        def rows(table: str) -> int:
            return index._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

        yield Opened(index, rows)
        asyncio.run(index.close())
        return
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(new_database(request.getfixturevalue("pgvector_url")), poolclass=NullPool)
    index = asyncio.run(PgChunkIndex(engine).open())

    def count(table: str) -> int:
        async def run() -> int:
            async with engine.connect() as db:
                return (await db.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()

        return asyncio.run(run())

    yield Opened(index, count)
    asyncio.run(engine.dispose())


@pytest.fixture
def index(opened: Opened) -> ChunkIndex:
    return opened.index


def test_vector_search_finds_the_nearest(index: ChunkIndex) -> None:
    """SQLite's vec0 search is exact; pgvector's HNSW index is approximate: recall@10 ≥ 0.95."""
    rng = np.random.default_rng(0)
    vectors = np.stack([unit(v) for v in rng.normal(size=(2000, DIMS))])
    asyncio.run(index.add(chunks("s", "d", [f"chunk {i}" for i in range(2000)], vectors)))
    found_total = 0
    for q in rng.normal(size=(5, DIMS)):
        query = unit(q)
        exact = list(np.argsort(-(vectors @ query))[:10])
        hits = asyncio.run(index.search(["s"], query, "", k=10))  # no words: the vector ranking alone
        found = [int(h.chunk_id.rsplit("/", 1)[1]) for h in hits]
        if isinstance(index, SqliteChunkIndex):
            assert found == exact
        found_total += len(set(found) & set(exact))
        assert hits[0].similarity == pytest.approx(float(vectors[found[0]] @ query), abs=1e-5)
    assert found_total >= 0.95 * 50


def test_hybrid_search_finds_by_meaning_and_by_words_and_keeps_stores_apart(index: ChunkIndex) -> None:
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


def test_a_selective_filter_still_finds_k_chunks(index: ChunkIndex) -> None:
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


def test_deleting_removes_vectors_and_words_and_adding_again_replaces(opened: Opened) -> None:
    index = opened.index
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
    assert opened.rows("chunk_vectors_16") == 0
    if isinstance(index, SqliteChunkIndex):
        assert opened.rows("chunk_words") == 0 and opened.rows("chunks") == 0
    else:
        assert opened.rows("chunk_index") == 0


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


def test_search_within_documents_and_pages_round_trip(index: ChunkIndex) -> None:
    basis = np.eye(DIMS, dtype=np.float32)
    first = chunks("s", "d1", ["kettle one", "kettle two"], basis[:2])
    second = [replace(c, page=7) for c in chunks("s", "d2", ["kettle three"], basis[:1])]
    asyncio.run(index.add(first + second))
    only = asyncio.run(index.search(["s"], basis[0], "kettle", k=5, documents=["s/documents/d2"]))
    assert [(h.text, h.page) for h in only] == [("kettle three", 7)]
    assert asyncio.run(index.search(["s"], basis[0], "kettle", k=5, documents=[])) == []
    everywhere = asyncio.run(index.search(["s"], basis[0], "kettle", k=5))
    assert {h.document for h in everywhere} == {"s/documents/d1", "s/documents/d2"}


def test_a_replica_searches_vectors_another_replica_added(request: pytest.FixtureRequest) -> None:
    """Two servers on one PostgreSQL: the one that opened its index before the other added the first vectors of
    a size still searches them (it finds their table), and ranks as the writer does."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    url = new_database(request.getfixturevalue("pgvector_url"))

    async def run() -> None:
        reader = await PgChunkIndex(create_async_engine(url, poolclass=NullPool)).open()
        writer = await PgChunkIndex(create_async_engine(url, poolclass=NullPool)).open()
        basis = np.eye(DIMS, dtype=np.float32)
        await writer.add(chunks("s", "d", ["alpha", "beta", "gamma"], basis[:3]))
        query = unit(basis[1] + 0.1 * basis[2])
        read = await reader.search(["s"], query, "", k=3)
        assert [h.chunk_id for h in read] == [h.chunk_id for h in await writer.search(["s"], query, "", k=3)]
        assert read[0].text == "beta" and read[0].similarity > 0.9

    asyncio.run(run())
