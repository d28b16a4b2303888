"""The Semantic Retriever's corpora, their documents, chunks and permissions. A corpus belongs to the project
that made it; permissions grant other projects (or everyone) a role on it. Chunks' vectors and words live
in the chunk index, which the corpus service keeps in step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from localgem.storage.database import Database
from localgem.storage.permissions import PermissionRepository, SqlPermissions
from localgem.storage.records import ChunkRecord, CorpusDocumentRecord, CorpusRecord
from localgem.storage.tables import corpora, corpus_chunks, corpus_documents, corpus_permissions


class Exists(Exception):
    """A resource of that name exists already."""


class CorpusRepository(PermissionRepository, Protocol):
    async def add_corpus(self, record: CorpusRecord) -> None: ...
    async def corpus(self, corpus_id: str) -> CorpusRecord | None: ...
    async def corpora(self, project: str) -> list[CorpusRecord]: ...
    async def update_corpus(self, corpus_id: str, changes: dict[str, Any], now: datetime) -> None: ...
    async def remove_corpus(self, corpus_id: str) -> None: ...
    async def add_document(self, record: CorpusDocumentRecord) -> None: ...
    async def document(self, corpus_id: str, document_id: str) -> CorpusDocumentRecord | None: ...
    async def documents(self, corpus_id: str) -> list[CorpusDocumentRecord]: ...
    async def update_document(
        self, corpus_id: str, document_id: str, changes: dict[str, Any], now: datetime
    ) -> None: ...
    async def remove_document(self, corpus_id: str, document_id: str) -> None: ...
    async def count_documents(self, corpus_id: str) -> int: ...
    async def count_chunks(self, corpus_id: str, document_id: str | None = None) -> int: ...
    async def add_chunks(self, records: Sequence[ChunkRecord]) -> None: ...
    async def chunk(self, corpus_id: str, document_id: str, chunk_id: str) -> ChunkRecord | None: ...
    async def chunks(self, corpus_id: str, document_id: str) -> list[ChunkRecord]: ...
    async def chunks_named(self, corpus_id: str, keys: Sequence[tuple[str, str]]) -> list[ChunkRecord]: ...
    async def replace_chunks(self, records: Sequence[ChunkRecord]) -> None: ...
    async def remove_chunks(self, corpus_id: str, keys: Sequence[tuple[str, str]]) -> None: ...


class SqlCorpusRepository(SqlPermissions):
    def __init__(self, db: Database) -> None:
        super().__init__(db, corpus_permissions, "corpus_id")
        self._db = db

    async def add_corpus(self, record: CorpusRecord) -> None:
        await self._insert(corpora, [asdict(record)])

    async def corpus(self, corpus_id: str) -> CorpusRecord | None:
        row = await self._first(select(corpora).where(corpora.c.id == corpus_id))
        return CorpusRecord(**row._mapping) if row else None

    async def corpora(self, project: str) -> list[CorpusRecord]:
        query = select(corpora).where(corpora.c.project == project).order_by(corpora.c.create_time, corpora.c.id)
        return [CorpusRecord(**row._mapping) for row in await self._all(query)]

    async def update_corpus(self, corpus_id: str, changes: dict[str, Any], now: datetime) -> None:
        await self._run(update(corpora).where(corpora.c.id == corpus_id).values(**changes, update_time=now))

    async def remove_corpus(self, corpus_id: str) -> None:
        async with self._db.begin() as conn:
            for table in (corpus_chunks, corpus_documents, corpus_permissions):
                await conn.execute(delete(table).where(table.c.corpus_id == corpus_id))
            await conn.execute(delete(corpora).where(corpora.c.id == corpus_id))

    async def add_document(self, record: CorpusDocumentRecord) -> None:
        await self._insert(corpus_documents, [asdict(record)])

    async def document(self, corpus_id: str, document_id: str) -> CorpusDocumentRecord | None:
        row = await self._first(select(corpus_documents).where(_document(corpus_id, document_id)))
        return CorpusDocumentRecord(**row._mapping) if row else None

    async def documents(self, corpus_id: str) -> list[CorpusDocumentRecord]:
        c = corpus_documents.c
        query = select(corpus_documents).where(c.corpus_id == corpus_id).order_by(c.create_time, c.id)
        return [CorpusDocumentRecord(**row._mapping) for row in await self._all(query)]

    async def update_document(self, corpus_id: str, document_id: str, changes: dict[str, Any], now: datetime) -> None:
        query = update(corpus_documents).where(_document(corpus_id, document_id)).values(**changes, update_time=now)
        await self._run(query)

    async def remove_document(self, corpus_id: str, document_id: str) -> None:
        c = corpus_chunks.c
        async with self._db.begin() as conn:
            await conn.execute(delete(corpus_chunks).where(c.corpus_id == corpus_id, c.document_id == document_id))
            await conn.execute(delete(corpus_documents).where(_document(corpus_id, document_id)))

    async def count_documents(self, corpus_id: str) -> int:
        query = select(func.count()).select_from(corpus_documents).where(corpus_documents.c.corpus_id == corpus_id)
        async with self._db.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def count_chunks(self, corpus_id: str, document_id: str | None = None) -> int:
        c = corpus_chunks.c
        query = select(func.count()).select_from(corpus_chunks).where(c.corpus_id == corpus_id)
        if document_id is not None:
            query = query.where(c.document_id == document_id)
        async with self._db.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def add_chunks(self, records: Sequence[ChunkRecord]) -> None:
        await self._insert(corpus_chunks, [asdict(r) for r in records])

    async def chunk(self, corpus_id: str, document_id: str, chunk_id: str) -> ChunkRecord | None:
        found = await self.chunks_named(corpus_id, [(document_id, chunk_id)])
        return found[0] if found else None

    async def chunks(self, corpus_id: str, document_id: str) -> list[ChunkRecord]:
        c = corpus_chunks.c
        query = (
            select(corpus_chunks)
            .where(c.corpus_id == corpus_id, c.document_id == document_id)
            .order_by(c.create_time, c.id)
        )
        return [ChunkRecord(**row._mapping) for row in await self._all(query)]

    async def chunks_named(self, corpus_id: str, keys: Sequence[tuple[str, str]]) -> list[ChunkRecord]:
        """The chunks (document id, chunk id) of the corpus that exist."""
        if not keys:
            return []
        c = corpus_chunks.c
        wanted = or_(*(and_(c.document_id == d, c.id == k) for d, k in keys))
        query = select(corpus_chunks).where(c.corpus_id == corpus_id, wanted)
        return [ChunkRecord(**row._mapping) for row in await self._all(query)]

    async def replace_chunks(self, records: Sequence[ChunkRecord]) -> None:
        c = corpus_chunks.c
        async with self._db.begin() as conn:
            for r in records:
                key = and_(c.corpus_id == r.corpus_id, c.document_id == r.document_id, c.id == r.id)
                await conn.execute(
                    update(corpus_chunks)
                    .where(key)
                    .values(data=r.data, custom_metadata=r.custom_metadata, state=r.state, update_time=r.update_time)
                )

    async def remove_chunks(self, corpus_id: str, keys: Sequence[tuple[str, str]]) -> None:
        if not keys:
            return
        c = corpus_chunks.c
        wanted = or_(*(and_(c.document_id == d, c.id == k) for d, k in keys))
        await self._run(delete(corpus_chunks).where(c.corpus_id == corpus_id, wanted))

    async def _insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        try:
            async with self._db.begin() as conn:
                await conn.execute(insert(table), rows)
        except IntegrityError as exc:
            raise Exists() from exc

    async def _first(self, query: Any) -> Any:
        async with self._db.read() as conn:
            return (await conn.execute(query)).first()

    async def _all(self, query: Any) -> list[Any]:
        async with self._db.read() as conn:
            return list(await conn.execute(query))

    async def _run(self, query: Any) -> None:
        async with self._db.begin() as conn:
            await conn.execute(query)


def _document(corpus_id: str, document_id: str) -> Any:
    return and_(corpus_documents.c.corpus_id == corpus_id, corpus_documents.c.id == document_id)
