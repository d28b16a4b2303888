"""File Search stores and their documents. A document is ingested as a leased operation (kind ``ingest``): a
server indexes it only while it holds its lease, and only the lease holder may make it ACTIVE or FAILED.

The raw bytes of a document are a blob shared by content with files (``storage.files.lock_blob`` /
``release_blob`` count both as users); its chunks live in the chunk index, which the service keeps in step.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from localgem.storage.database import Database
from localgem.storage.files import DropBytes, StoreBytes, lock_blob, release_blob
from localgem.storage.records import DocumentCounts, DocumentRecord, FileSearchStoreRecord
from localgem.storage.tables import file_search_documents as documents
from localgem.storage.tables import file_search_stores as stores
from localgem.storage.tables import uploads

PENDING, ACTIVE, FAILED = "STATE_PENDING", "STATE_ACTIVE", "STATE_FAILED"


class FileSearchRepository(Protocol):
    async def add_store(self, record: FileSearchStoreRecord) -> None: ...
    async def store(self, project: str, store_id: str) -> FileSearchStoreRecord | None: ...
    async def stores(self, project: str) -> list[FileSearchStoreRecord]: ...
    async def counts(self, project: str, store_ids: Sequence[str]) -> dict[str, DocumentCounts]: ...
    async def remove_store(self, project: str, store_id: str, drop_bytes: DropBytes) -> list[str]: ...
    async def add_document(
        self, record: DocumentRecord, store_bytes: StoreBytes, *, finalizes_upload: str | None = None
    ) -> None: ...
    async def document(self, project: str, store_id: str, document_id: str) -> DocumentRecord | None: ...
    async def documents(self, project: str, store_id: str) -> list[DocumentRecord]: ...
    async def remove_document(self, project: str, store_id: str, document_id: str, drop_bytes: DropBytes) -> bool: ...
    async def active(
        self, project: str, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], DocumentRecord]: ...
    async def note(
        self,
        owner: str,
        record: DocumentRecord,
        *,
        chunk_count: int | None = None,
        error: str | None = None,
        mime_type: str | None = None,
    ) -> bool: ...
    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> DocumentRecord | None: ...
    async def renew(
        self, owner: str, record: DocumentRecord, now: datetime, until: datetime, results: Sequence[Any] = ()
    ) -> bool: ...
    async def finish(self, owner: str, record: DocumentRecord, state: str, now: datetime) -> bool: ...
    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool: ...
    async def expire(self, created_before: datetime, now: datetime) -> int: ...


class SqlFileSearchRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_store(self, record: FileSearchStoreRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(insert(stores).values(**asdict(record)))

    async def store(self, project: str, store_id: str) -> FileSearchStoreRecord | None:
        query = select(stores).where(stores.c.project == project, stores.c.id == store_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return FileSearchStoreRecord(**row._mapping) if row else None

    async def stores(self, project: str) -> list[FileSearchStoreRecord]:
        """Oldest first, as Google lists them."""
        query = select(stores).where(stores.c.project == project).order_by(stores.c.create_time, stores.c.id)
        async with self._db.read() as conn:
            return [FileSearchStoreRecord(**row._mapping) for row in await conn.execute(query)]

    async def counts(self, project: str, store_ids: Sequence[str]) -> dict[str, DocumentCounts]:
        c = documents.c

        def count(state: str) -> Any:
            return func.coalesce(func.sum(case((c.state == state, 1), else_=0)), 0)

        query = (
            select(c.store_id, count(ACTIVE), count(PENDING), count(FAILED), func.coalesce(func.sum(c.size_bytes), 0))
            .where(c.project == project, c.store_id.in_(list(store_ids)))
            .group_by(c.store_id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        found = {row[0]: DocumentCounts(*(int(v) for v in row[1:])) for row in rows}
        return {store_id: found.get(store_id, DocumentCounts()) for store_id in store_ids}

    async def remove_store(self, project: str, store_id: str, drop_bytes: DropBytes) -> list[str]:
        """The store and all its documents, in one transaction; the ids of the documents removed."""
        c = documents.c
        async with self._db.begin() as conn:
            query = select(c.id, c.sha256).where(c.project == project, c.store_id == store_id)
            rows = (await conn.execute(query)).all()
            await conn.execute(delete(documents).where(c.project == project, c.store_id == store_id))
            await conn.execute(delete(stores).where(stores.c.project == project, stores.c.id == store_id))
            for sha256 in {sha for _, sha in rows if sha}:
                await release_blob(conn, sha256, drop_bytes)
        return [document_id for document_id, _ in rows]

    async def add_document(
        self, record: DocumentRecord, store_bytes: StoreBytes, *, finalizes_upload: str | None = None
    ) -> None:
        """The document, with its bytes stored while the blob's row is held (see ``lock_blob``)."""
        async with self._db.begin() as conn:
            if record.sha256 is not None:
                await lock_blob(conn, record.sha256, record.size_bytes, record.create_time)
            await store_bytes()
            await conn.execute(insert(documents).values(**asdict(record)))
            if finalizes_upload is not None:
                await conn.execute(update(uploads).where(uploads.c.id == finalizes_upload).values(finalized=True))

    async def document(self, project: str, store_id: str, document_id: str) -> DocumentRecord | None:
        query = select(documents).where(_key(project, store_id, document_id))
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return DocumentRecord(**row._mapping) if row else None

    async def documents(self, project: str, store_id: str) -> list[DocumentRecord]:
        c = documents.c
        query = select(documents).where(c.project == project, c.store_id == store_id).order_by(c.create_time, c.id)
        async with self._db.read() as conn:
            return [DocumentRecord(**row._mapping) for row in await conn.execute(query)]

    async def remove_document(self, project: str, store_id: str, document_id: str, drop_bytes: DropBytes) -> bool:
        async with self._db.begin() as conn:
            sha256 = await conn.scalar(select(documents.c.sha256).where(_key(project, store_id, document_id)))
            removed = await conn.execute(delete(documents).where(_key(project, store_id, document_id)))
            if sha256 is not None:
                await release_blob(conn, sha256, drop_bytes)
        return removed.rowcount == 1

    async def active(self, project: str, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], DocumentRecord]:
        """The ACTIVE documents of the project among these (store id, document id)."""
        if not keys:
            return {}
        c = documents.c
        wanted = or_(*(and_(c.store_id == store_id, c.id == document_id) for store_id, document_id in keys))
        query = select(documents).where(c.project == project, c.state == ACTIVE, wanted)
        async with self._db.read() as conn:
            found = [DocumentRecord(**row._mapping) for row in await conn.execute(query)]
        return {(r.store_id, r.id): r for r in found}

    async def note(
        self,
        owner: str,
        record: DocumentRecord,
        *,
        chunk_count: int | None = None,
        error: str | None = None,
        mime_type: str | None = None,
    ) -> bool:
        """Records what ingestion found (the type, chunks indexed, or why it failed), if ``owner`` still
        holds the lease."""
        found = (("chunk_count", chunk_count), ("error", error), ("mime_type", mime_type))
        changes = {k: v for k, v in found if v is not None}
        query = update(documents).where(_held(owner, record)).values(**changes)
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    # The operations runner's lease protocol (see operations.runner.OperationStore).

    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> DocumentRecord | None:
        if kinds is not None and "ingest" not in kinds:
            return None
        c = documents.c
        free = and_(c.state == PENDING, or_(c.lease_until.is_(None), c.lease_until < now))
        candidates = select(c.project, c.store_id, c.id).where(free).order_by(c.create_time).limit(8)
        async with self._db.read() as conn:
            found = (await conn.execute(candidates)).all()
        for project, store_id, document_id in found:
            take = (
                update(documents)
                .where(_key(project, store_id, document_id), free)
                .values(lease_owner=owner, lease_until=until)
            )
            async with self._db.begin() as conn:
                if (await conn.execute(take)).rowcount == 1:
                    row = (await conn.execute(select(documents).where(_key(project, store_id, document_id)))).one()
                    return DocumentRecord(**row._mapping)
        return None

    async def renew(
        self, owner: str, record: DocumentRecord, now: datetime, until: datetime, results: Sequence[Any] = ()
    ) -> bool:
        query = update(documents).where(_held(owner, record)).values(lease_until=until)
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def finish(self, owner: str, record: DocumentRecord, state: str, now: datetime) -> bool:
        query = (
            update(documents)
            .where(_held(owner, record))
            .values(state=state, update_time=now, lease_owner=None, lease_until=None)
        )
        async with self._db.begin() as conn:
            if (await conn.execute(query)).rowcount != 1:
                return False
            await _touch_store(conn, record.project, record.store_id, now)
        return True

    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool:
        return False  # an ingestion is not cancelled: its document is deleted

    async def expire(self, created_before: datetime, now: datetime) -> int:
        c = documents.c
        query = (
            update(documents)
            .where(c.state == PENDING, c.create_time < created_before)
            .values(
                state=FAILED,
                error="The document was not processed in time.",
                update_time=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount


def _key(project: str, store_id: str, document_id: str) -> Any:
    c = documents.c
    return and_(c.project == project, c.store_id == store_id, c.id == document_id)


def _held(owner: str, record: DocumentRecord) -> Any:
    c = documents.c
    return and_(_key(record.project, record.store_id, record.id), c.lease_owner == owner, c.state == PENDING)


async def _touch_store(conn: AsyncConnection, project: str, store_id: str, now: datetime) -> None:
    await conn.execute(
        update(stores).where(stores.c.project == project, stores.c.id == store_id).values(update_time=now)
    )
