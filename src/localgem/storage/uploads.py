"""Resumable upload sessions: who may write, how much has been acknowledged, when they expire."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, insert, select, update

from localgem.storage.database import Database
from localgem.storage.records import UploadRecord
from localgem.storage.tables import uploads


class UploadRepository(Protocol):
    async def add(self, record: UploadRecord) -> None: ...
    async def by_token(self, token_digest: str, now: datetime) -> UploadRecord | None: ...
    async def advance(self, upload_id: str, acknowledged: int, received: int) -> bool: ...
    async def pending_for(self, project: str, file_id: str, now: datetime) -> bool: ...
    async def pending_bytes(self, project: str, now: datetime) -> int: ...
    async def remove(self, upload_id: str) -> None: ...
    async def expired(self, now: datetime, limit: int) -> list[UploadRecord]: ...
    async def ids(self) -> set[str]: ...


class SqlUploadRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: UploadRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(insert(uploads).values(**asdict(record)))

    async def by_token(self, token_digest: str, now: datetime) -> UploadRecord | None:
        query = select(uploads).where(uploads.c.token_digest == token_digest, uploads.c.expire_time > now)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return UploadRecord(**row._mapping) if row else None

    async def advance(self, upload_id: str, acknowledged: int, received: int) -> bool:
        """Move the acknowledged size forward, only if nobody else moved it first (compare-and-set)."""
        query = (
            update(uploads)
            .where(uploads.c.id == upload_id, uploads.c.received == acknowledged, uploads.c.finalized.is_(False))
            .values(received=received)
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def pending_for(self, project: str, file_id: str, now: datetime) -> bool:
        query = select(uploads.c.id).where(
            uploads.c.project == project,
            uploads.c.file_id == file_id,
            uploads.c.finalized.is_(False),
            uploads.c.expire_time > now,
        )
        async with self._db.read() as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def pending_bytes(self, project: str, now: datetime) -> int:
        query = select(func.coalesce(func.sum(uploads.c.declared_size), 0)).where(
            uploads.c.project == project, uploads.c.finalized.is_(False), uploads.c.expire_time > now
        )
        async with self._db.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def remove(self, upload_id: str) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(uploads).where(uploads.c.id == upload_id))

    async def expired(self, now: datetime, limit: int) -> list[UploadRecord]:
        query = select(uploads).where(uploads.c.expire_time <= now).order_by(uploads.c.expire_time).limit(limit)
        async with self._db.read() as conn:
            return [UploadRecord(**row._mapping) for row in await conn.execute(query)]

    async def ids(self) -> set[str]:
        async with self._db.read() as conn:
            return set(await conn.scalars(select(uploads.c.id)))
