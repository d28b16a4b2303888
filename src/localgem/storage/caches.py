"""Cached contents: what a cache holds, whose it is, and until when."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, insert, select, update

from localgem.storage.database import Database
from localgem.storage.records import CacheRecord
from localgem.storage.tables import cached_contents as caches


class CacheRepository(Protocol):
    async def add(self, record: CacheRecord) -> None: ...
    async def get(self, project: str, cache_id: str, now: datetime) -> CacheRecord | None: ...
    async def all(self, project: str, now: datetime) -> list[CacheRecord]: ...
    async def expire_at(self, project: str, cache_id: str, expire: datetime, now: datetime) -> CacheRecord | None: ...
    async def remove(self, project: str, cache_id: str) -> bool: ...
    async def expired(self, now: datetime, limit: int) -> list[CacheRecord]: ...


class SqlCacheRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: CacheRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(insert(caches).values(**asdict(record)))

    async def get(self, project: str, cache_id: str, now: datetime) -> CacheRecord | None:
        query = select(caches).where(caches.c.project == project, caches.c.id == cache_id, caches.c.expire_time > now)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return CacheRecord(**row._mapping) if row else None

    async def all(self, project: str, now: datetime) -> list[CacheRecord]:
        """Newest first (a project holds at most a few thousand caches: pages are cut in memory)."""
        query = (
            select(caches)
            .where(caches.c.project == project, caches.c.expire_time > now)
            .order_by(caches.c.create_time.desc(), caches.c.id)
        )
        async with self._db.read() as conn:
            return [CacheRecord(**row._mapping) for row in await conn.execute(query)]

    async def expire_at(self, project: str, cache_id: str, expire: datetime, now: datetime) -> CacheRecord | None:
        query = (
            update(caches)
            .where(caches.c.project == project, caches.c.id == cache_id, caches.c.expire_time > now)
            .values(expire_time=expire, update_time=now)
        )
        async with self._db.begin() as conn:
            if (await conn.execute(query)).rowcount != 1:
                return None
            row = (await conn.execute(select(caches).where(caches.c.project == project, caches.c.id == cache_id))).one()
        return CacheRecord(**row._mapping)

    async def remove(self, project: str, cache_id: str) -> bool:
        async with self._db.begin() as conn:
            result = await conn.execute(delete(caches).where(caches.c.project == project, caches.c.id == cache_id))
        return result.rowcount == 1

    async def expired(self, now: datetime, limit: int) -> list[CacheRecord]:
        query = select(caches).where(caches.c.expire_time <= now).order_by(caches.c.expire_time).limit(limit)
        async with self._db.read() as conn:
            return [CacheRecord(**row._mapping) for row in await conn.execute(query)]
