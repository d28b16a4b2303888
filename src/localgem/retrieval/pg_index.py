"""The chunk index on PostgreSQL: pgvector for vectors (an HNSW index per embedding size, cosine
distance) and PostgreSQL's full-text search for keywords, in the server's own database, so every
replica sees the same index.

The tables are made when the index opens (``CREATE EXTENSION vector`` needs the extension installed
on the server, and a role allowed to create it). Without a metadata filter the HNSW index finds a
store's nearest chunks (``hnsw.iterative_scan`` keeps scanning until the store's own are found);
with one, distances are taken exactly over the chunks the filter keeps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from localgem import errors
from localgem.retrieval.fusion import fuse
from localgem.retrieval.index import FETCH_FACTOR, Hit, IndexedChunk, query_words
from localgem.retrieval.metadata_filter import Filter, matches

#: Candidates HNSW keeps while searching (pgvector's default is 40; at most 1000). bench/retrieval.py,
#: on hard synthetic vectors (384 dimensions, 200 noisy clusters): recall@10 0.95 at 10k chunks, but
#: 0.39 at 100k (0.85 with 800): the graph's build parameters are still to be tuned at that scale.
_EF_SEARCH = 200


def _vector(values: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in np.asarray(values, dtype=np.float32).reshape(-1)) + "]"


class PgChunkIndex:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dims: set[int] = set()

    async def open(self) -> PgChunkIndex:
        async with self._engine.begin() as db:
            try:
                await db.execute(sql("CREATE EXTENSION IF NOT EXISTS vector"))
            except Exception as exc:  # the server lacks pgvector, or the role may not add it
                raise errors.FailedPrecondition(
                    f"File Search on PostgreSQL needs the pgvector extension (CREATE EXTENSION vector): {exc}"
                ) from exc
            await db.execute(
                sql(
                    "CREATE TABLE IF NOT EXISTS chunk_index (id BIGSERIAL PRIMARY KEY, store TEXT NOT NULL,"
                    " document TEXT NOT NULL, name TEXT NOT NULL UNIQUE, text TEXT NOT NULL, metadata JSONB NOT NULL,"
                    " dims INTEGER NOT NULL, page INTEGER,"
                    " words TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)"
                )
            )
            await db.execute(sql("CREATE INDEX IF NOT EXISTS chunk_index_by_document ON chunk_index (store, document)"))
            await db.execute(sql("CREATE INDEX IF NOT EXISTS chunk_index_words ON chunk_index USING gin (words)"))
            rows = await db.execute(sql("SELECT DISTINCT dims FROM chunk_index"))
            self._dims = {row[0] for row in rows}
        return self

    async def _vectors(self, db: AsyncConnection, dims: int) -> str:
        table = f"chunk_vectors_{int(dims)}"
        if dims not in self._dims:
            await db.execute(
                sql(
                    f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY REFERENCES chunk_index (id)"
                    f" ON DELETE CASCADE, store TEXT NOT NULL, embedding vector({int(dims)}) NOT NULL)"
                )
            )
            await db.execute(
                sql(f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)")
            )
            self._dims.add(dims)
        return table

    async def add(self, chunks: Sequence[IndexedChunk]) -> None:
        if not chunks:
            return
        vectors = [np.asarray(c.embedding, dtype=np.float32).reshape(-1) for c in chunks]
        async with self._engine.begin() as db:
            names = [c.chunk_id for c in chunks]
            await db.execute(sql("DELETE FROM chunk_index WHERE name = ANY(:names)"), {"names": names})
            rows = await db.execute(
                sql(
                    "INSERT INTO chunk_index (store, document, name, text, metadata, dims, page)"
                    " SELECT * FROM unnest(CAST(:stores AS TEXT[]), CAST(:documents AS TEXT[]), CAST(:names AS TEXT[]),"
                    " CAST(:texts AS TEXT[]), CAST(:metadata AS JSONB[]), CAST(:dims AS INTEGER[]),"
                    " CAST(:pages AS INTEGER[])) RETURNING id, name"
                ),
                {
                    "stores": [c.store for c in chunks],
                    "documents": [c.document for c in chunks],
                    "names": names,
                    "texts": [c.text for c in chunks],
                    "metadata": [json.dumps(c.metadata) for c in chunks],
                    "dims": [len(v) for v in vectors],
                    "pages": [c.page for c in chunks],
                },
            )
            ids = dict((name, row) for row, name in rows)
            for dims in sorted({len(v) for v in vectors}):
                table = await self._vectors(db, dims)
                mine = [(c, v) for c, v in zip(chunks, vectors, strict=True) if len(v) == dims]
                await db.execute(
                    sql(
                        f"INSERT INTO {table} (id, store, embedding) SELECT * FROM unnest(CAST(:ids AS BIGINT[]),"
                        " CAST(:stores AS TEXT[]), CAST(:vectors AS vector[]))"
                    ),
                    {
                        "ids": [ids[c.chunk_id] for c, _ in mine],
                        "stores": [c.store for c, _ in mine],
                        "vectors": [_vector(v) for _, v in mine],
                    },
                )

    async def delete_documents(self, store: str, documents: Sequence[str]) -> int:
        if not documents:
            return 0
        return await self._delete(
            "store = :store AND document = ANY(:documents)", store=store, documents=list(documents)
        )

    async def delete_chunks(self, chunk_ids: Sequence[str]) -> int:
        if not chunk_ids:
            return 0
        return await self._delete("name = ANY(:names)", names=list(chunk_ids))

    async def delete_store(self, store: str) -> int:
        return await self._delete("store = :store", store=store)

    async def _delete(self, where: str, **args: object) -> int:
        async with self._engine.begin() as db:  # the vectors go with their rows (ON DELETE CASCADE)
            result = await db.execute(sql(f"DELETE FROM chunk_index WHERE {where}"), args)
            return result.rowcount or 0

    async def count(self, store: str) -> int:
        async with self._engine.connect() as db:
            return (
                await db.execute(sql("SELECT count(*) FROM chunk_index WHERE store = :s"), {"s": store})
            ).scalar_one()

    async def search(
        self,
        stores: Sequence[str],
        vector: np.ndarray,
        text: str,
        k: int,
        condition: Filter | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        if not stores or k <= 0:
            return []
        stores = list(stores)
        fetch = k * FETCH_FACTOR
        async with self._engine.begin() as db:
            narrowed = condition is not None or documents is not None
            allowed = await self._allowed(db, stores, condition, documents) if narrowed else None
            similar = await self._similar(db, stores, np.asarray(vector, dtype=np.float32), fetch, allowed)
            words = await self._keywords(db, stores, text, fetch, allowed)
            fused = fuse([[row for row, _ in similar], words], limit=k)
            rows = await self._rows(db, [row for row, _ in fused])
        similarity = dict(similar)
        hits = []
        for row, score in fused:
            store, document, name, chunk_text, metadata, page = rows[row]
            hits.append(Hit(name, store, document, chunk_text, metadata, similarity.get(row, 0.0), score, page))
        return hits

    async def _allowed(
        self, db: AsyncConnection, stores: list[str], condition: Filter | None, documents: Sequence[str] | None
    ) -> list[int]:
        query = "SELECT id, metadata FROM chunk_index WHERE store = ANY(:stores)"
        if documents is not None:
            query += " AND document = ANY(:documents)"
        rows = await db.execute(sql(query), {"stores": stores, "documents": list(documents or [])})
        return [row for row, metadata in rows if matches(condition, metadata)]

    async def _similar(
        self, db: AsyncConnection, stores: list[str], vector: np.ndarray, fetch: int, allowed: list[int] | None
    ) -> list[tuple[int, float]]:
        dims = len(vector)
        if dims not in self._dims:
            # Another replica may have made this size's table since this one opened the index.
            found = await db.execute(sql("SELECT to_regclass(:table)"), {"table": f"chunk_vectors_{int(dims)}"})
            if found.scalar() is None:
                return []
            self._dims.add(dims)
        table = await self._vectors(db, dims)
        query = {"q": _vector(vector), "fetch": fetch}
        if allowed is not None:
            if not allowed:
                return []
            rows = await db.execute(
                sql(
                    f"SELECT id, embedding <=> CAST(:q AS vector) AS d FROM {table} WHERE id = ANY(:ids)"
                    " ORDER BY d LIMIT :fetch"
                ),
                {**query, "ids": allowed},
            )
        else:
            await db.execute(sql("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            await db.execute(sql(f"SET LOCAL hnsw.ef_search = {min(max(_EF_SEARCH, fetch), 1000)}"))
            rows = await db.execute(
                sql(
                    f"SELECT id, embedding <=> CAST(:q AS vector) AS d FROM {table} WHERE store = ANY(:stores)"
                    " ORDER BY embedding <=> CAST(:q AS vector) LIMIT :fetch"
                ),
                {**query, "stores": stores},
            )
        found = sorted(((row, float(d)) for row, d in rows), key=lambda pair: pair[1])
        return [(row, 1.0 - d) for row, d in found]

    async def _keywords(
        self, db: AsyncConnection, stores: list[str], text: str, fetch: int, allowed: list[int] | None
    ) -> list[int]:
        terms = query_words(text)
        if not terms:
            return []
        query = " | ".join(terms)  # \w+ words hold no tsquery syntax
        rows = await db.execute(
            sql(
                "SELECT id FROM chunk_index, to_tsquery('english', :query) AS q WHERE words @@ q"
                " AND store = ANY(:stores) AND (CAST(:all AS BOOLEAN) OR id = ANY(:ids))"
                " ORDER BY ts_rank_cd(words, q) DESC, id LIMIT :fetch"
            ),
            {"query": query, "stores": stores, "all": allowed is None, "ids": allowed or [], "fetch": fetch},
        )
        return [row for (row,) in rows]

    async def _rows(self, db: AsyncConnection, ids: list[int]) -> dict[int, tuple]:
        if not ids:
            return {}
        rows = await db.execute(
            sql("SELECT id, store, document, name, text, metadata, page FROM chunk_index WHERE id = ANY(:ids)"),
            {"ids": ids},
        )
        return {row[0]: tuple(row[1:]) for row in rows}

    async def close(self) -> None:
        """The engine is the database's: it closes with it."""
