"""API keys created with ``localgem keys create``: digests and the project each key acts for."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import delete, insert, select

from localgem.storage.database import Database
from localgem.storage.records import KeyRecord
from localgem.storage.tables import api_keys


class KeyRepository(Protocol):
    async def add(self, record: KeyRecord) -> None: ...
    async def project_of(self, digest: str) -> str | None: ...
    async def all(self) -> list[KeyRecord]: ...
    async def remove(self, hint: str) -> int: ...


class SqlKeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: KeyRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                insert(api_keys).values(
                    digest=record.digest, project=record.project, hint=record.hint, create_time=record.create_time
                )
            )

    async def project_of(self, digest: str) -> str | None:
        async with self._db.read() as conn:
            return await conn.scalar(select(api_keys.c.project).where(api_keys.c.digest == digest))

    async def all(self) -> list[KeyRecord]:
        async with self._db.read() as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.project, api_keys.c.create_time))
            return [KeyRecord(**row._mapping) for row in rows]

    async def remove(self, hint: str) -> int:
        async with self._db.begin() as conn:
            return (await conn.execute(delete(api_keys).where(api_keys.c.hint == hint))).rowcount
