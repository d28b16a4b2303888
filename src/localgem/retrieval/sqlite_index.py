"""The chunk index on SQLite: sqlite-vec's ``vec0`` tables for vectors (cosine distance, partitioned by
store) and an FTS5 table for keywords, in a file of its own beside the database.

Why a file of its own: loading sqlite-vec needs a SQLite that allows extensions, which many Python
builds (pyenv's, macOS's) do not; ``sqlean.py`` is such a SQLite in a wheel. The database keeps its
standard driver and every table but these; the index is written only through its own connection, in
one thread. Its rows are keyed by chunk name; the documents they belong to are the database's (a
document becomes ACTIVE only after its chunks are here, and a crash before that leaves chunks that
the store's next ingestion or deletion sweeps up).

``vec0`` in sqlite-vec 0.1.9 compares the query with every vector of the partition (exact search, in
SIMD C); with a metadata filter the distances are taken over the chunks the filter keeps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from localgem.one_thread import OneThread
from localgem.retrieval.fusion import fuse
from localgem.retrieval.index import FETCH_FACTOR, Hit, IndexedChunk, query_words
from localgem.retrieval.metadata_filter import Filter, matches


class SqliteChunkIndex:
    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._thread = OneThread("chunk-index")
        self._db = None
        self._dims: set[int] = set()

    async def open(self) -> SqliteChunkIndex:
        await self._thread.run(self._open)
        return self

    def _open(self) -> None:
        import sqlean
        import sqlite_vec

        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlean.connect(self._path, isolation_level=None, check_same_thread=False)
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        db.enable_load_extension(False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, store TEXT NOT NULL, document TEXT NOT NULL,"
            " name TEXT NOT NULL UNIQUE, text TEXT NOT NULL, metadata TEXT NOT NULL, dims INTEGER NOT NULL,"
            " page INTEGER)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (store, document)")
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_words USING fts5(text, content='', contentless_delete=1,"
            " tokenize='porter unicode61')"
        )
        self._db = db
        self._dims = {row[0] for row in db.execute("SELECT DISTINCT dims FROM chunks")}

    def _vectors(self, dims: int) -> str:
        table = f"chunk_vectors_{int(dims)}"
        if dims not in self._dims:
            self._db.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
                f"store TEXT PARTITION KEY, embedding float[{int(dims)}] distance_metric=cosine)"
            )
            self._dims.add(dims)
        return table

    async def add(self, chunks: Sequence[IndexedChunk]) -> None:
        if chunks:
            await self._thread.run(self._add, list(chunks))

    def _add(self, chunks: list[IndexedChunk]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            names = [c.chunk_id for c in chunks]
            self._delete_where(f"name IN ({_marks(names)})", names)  # adding a chunk again replaces it
            for chunk in chunks:
                vector = np.ascontiguousarray(chunk.embedding, dtype=np.float32).reshape(-1)
                row = db.execute(
                    "INSERT INTO chunks (store, document, name, text, metadata, dims, page)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        chunk.store,
                        chunk.document,
                        chunk.chunk_id,
                        chunk.text,
                        json.dumps(chunk.metadata),
                        len(vector),
                        chunk.page,
                    ),
                ).lastrowid
                db.execute(
                    f"INSERT INTO {self._vectors(len(vector))} (rowid, store, embedding) VALUES (?, ?, ?)",
                    (row, chunk.store, vector.tobytes()),
                )
                db.execute("INSERT INTO chunk_words (rowid, text) VALUES (?, ?)", (row, chunk.text))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def delete_documents(self, store: str, documents: Sequence[str]) -> int:
        if not documents:
            return 0
        where = f"store = ? AND document IN ({_marks(documents)})"
        return await self._thread.run(self._delete, where, [store, *documents])

    async def delete_chunks(self, chunk_ids: Sequence[str]) -> int:
        if not chunk_ids:
            return 0
        return await self._thread.run(self._delete, f"name IN ({_marks(chunk_ids)})", list(chunk_ids))

    async def delete_store(self, store: str) -> int:
        return await self._thread.run(self._delete, "store = ?", [store])

    def _delete(self, where: str, args: list) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            removed = self._delete_where(where, args)
            self._db.execute("COMMIT")
            return removed
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _delete_where(self, where: str, args: list) -> int:
        rows = self._db.execute(f"SELECT id, dims FROM chunks WHERE {where}", args).fetchall()
        for dims in {d for _, d in rows}:
            ids = [i for i, d in rows if d == dims]
            for at in range(0, len(ids), 500):
                part = ids[at : at + 500]
                self._db.execute(f"DELETE FROM {self._vectors(dims)} WHERE rowid IN ({_marks(part)})", part)
        for at in range(0, len(rows), 500):
            part = [i for i, _ in rows[at : at + 500]]
            self._db.execute(f"DELETE FROM chunk_words WHERE rowid IN ({_marks(part)})", part)
            self._db.execute(f"DELETE FROM chunks WHERE id IN ({_marks(part)})", part)
        return len(rows)

    async def count(self, store: str) -> int:
        return await self._thread.run(
            lambda: self._db.execute("SELECT count(*) FROM chunks WHERE store = ?", (store,)).fetchone()[0]
        )

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
        vector = np.asarray(vector, dtype=np.float32)
        return await self._thread.run(self._search, list(stores), vector, text, k, condition, documents)

    def _search(
        self,
        stores: list[str],
        vector: np.ndarray,
        text: str,
        k: int,
        condition: Filter | None,
        documents: Sequence[str] | None,
    ) -> list[Hit]:
        fetch = k * FETCH_FACTOR
        narrowed = condition is not None or documents is not None
        allowed = self._allowed(stores, condition, documents) if narrowed else None
        similar = self._similar(stores, vector, fetch, allowed)
        words = self._keywords(stores, text, fetch, allowed)
        fused = fuse([[row for row, _ in similar], words], limit=k)
        similarity = dict(similar)
        rows = {row: record for row, record in self._rows([row for row, _ in fused]).items()}
        hits = []
        for row, score in fused:
            store, document, name, chunk_text, metadata, page = rows[row]
            found = Hit(name, store, document, chunk_text, json.loads(metadata), similarity.get(row, 0.0), score, page)
            hits.append(found)
        return hits

    def _allowed(self, stores: list[str], condition: Filter | None, documents: Sequence[str] | None) -> set[int]:
        if documents is not None and not documents:
            return set()
        query, args = f"SELECT id, metadata FROM chunks WHERE store IN ({_marks(stores)})", list(stores)
        if documents is not None:
            query += f" AND document IN ({_marks(documents)})"
            args += list(documents)
        rows = self._db.execute(query, args)
        return {row for row, metadata in rows if matches(condition, json.loads(metadata))}

    def _similar(
        self, stores: list[str], vector: np.ndarray, fetch: int, allowed: set[int] | None
    ) -> list[tuple[int, float]]:
        dims = len(vector)
        if dims not in self._dims:
            return []
        table = self._vectors(dims)
        query = vector.tobytes()
        found: list[tuple[int, float]] = []
        if allowed is not None:
            ids = sorted(allowed)
            for at in range(0, len(ids), 500):
                part = ids[at : at + 500]
                found += self._db.execute(
                    f"SELECT rowid, vec_distance_cosine(embedding, ?) FROM {table} WHERE rowid IN ({_marks(part)})",
                    [query, *part],
                ).fetchall()
        else:
            for store in stores:
                found += self._db.execute(
                    f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ? AND store = ?",
                    (query, fetch, store),
                ).fetchall()
        found.sort(key=lambda pair: pair[1])
        return [(row, 1.0 - distance) for row, distance in found[:fetch]]

    def _keywords(self, stores: list[str], text: str, fetch: int, allowed: set[int] | None) -> list[int]:
        terms = query_words(text)
        if not terms:
            return []
        match = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        rows = self._db.execute(
            f"SELECT chunk_words.rowid FROM chunk_words JOIN chunks ON chunks.id = chunk_words.rowid"
            f" WHERE chunk_words MATCH ? AND chunks.store IN ({_marks(stores)}) ORDER BY bm25(chunk_words) LIMIT ?",
            [match, *stores, fetch if allowed is None else -1],
        ).fetchall()
        ranked = [row for (row,) in rows if allowed is None or row in allowed]
        return ranked[:fetch]

    def _rows(self, ids: list[int]) -> dict[int, tuple]:
        if not ids:
            return {}
        rows = self._db.execute(
            f"SELECT id, store, document, name, text, metadata, page FROM chunks WHERE id IN ({_marks(ids)})", ids
        )
        return {row[0]: row[1:] for row in rows}

    async def close(self) -> None:
        if self._db is not None:
            await self._thread.run(self._db.close)
            self._db = None


def _marks(values: Sequence) -> str:
    return ", ".join("?" * len(values))
