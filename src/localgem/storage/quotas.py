"""Quota counters and leases in the database, so that every server sharing it enforces one limit.

A take is one transaction that checks every counter and seat a request needs and takes all or none. Takes of
one bucket are serialized: SQLite's ``BEGIN IMMEDIATE`` holds the one write lock; PostgreSQL takes a
transaction-scoped advisory lock per bucket (in sorted order, so two takes never wait on each other in a ring).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from localgem.storage.database import Database
from localgem.storage.tables import quota_leases, quota_usage


@dataclass(frozen=True)
class Charge:
    """``amount`` more of a counter whose window (a minute, a day) starts at ``window_start`` (epoch seconds)."""

    bucket: str
    window_start: int
    amount: int
    limit: int


@dataclass(frozen=True)
class Seat:
    """One more request running at once in ``bucket``."""

    bucket: str
    limit: int


class QuotaRepository(Protocol):
    async def take(
        self, charges: Sequence[Charge], seats: Sequence[Seat], lease_id: str, lease_until: datetime, now: datetime
    ) -> list[Charge | Seat]: ...
    async def release(self, lease_id: str) -> None: ...
    async def used(self, bucket: str, window_start: int) -> int: ...


class SqlQuotaRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def take(
        self, charges: Sequence[Charge], seats: Sequence[Seat], lease_id: str, lease_until: datetime, now: datetime
    ) -> list[Charge | Seat]:
        """Takes every charge and seat, or none: the ones over their limit are returned (empty: all taken)."""
        async with self._db.begin() as conn:
            await self._lock(conn, sorted({c.bucket for c in charges} | {s.bucket for s in seats}))
            exceeded: list[Charge | Seat] = []
            for charge in charges:
                await conn.execute(
                    delete(quota_usage).where(
                        quota_usage.c.bucket == charge.bucket, quota_usage.c.window_start < charge.window_start
                    )
                )
                if await self._used(conn, charge.bucket, charge.window_start) + charge.amount > charge.limit:
                    exceeded.append(charge)
            for seat in seats:
                await conn.execute(
                    delete(quota_leases).where(quota_leases.c.bucket == seat.bucket, quota_leases.c.expire_time <= now)
                )
                running = await conn.scalar(
                    select(func.count()).select_from(quota_leases).where(quota_leases.c.bucket == seat.bucket)
                )
                if (running or 0) >= seat.limit:
                    exceeded.append(seat)
            if exceeded:
                return exceeded
            for charge in charges:
                updated = await conn.execute(
                    update(quota_usage)
                    .where(quota_usage.c.bucket == charge.bucket, quota_usage.c.window_start == charge.window_start)
                    .values(used=quota_usage.c.used + charge.amount)
                )
                if updated.rowcount == 0:
                    await conn.execute(
                        insert(quota_usage).values(
                            bucket=charge.bucket, window_start=charge.window_start, used=charge.amount
                        )
                    )
            for seat in seats:
                await conn.execute(
                    insert(quota_leases).values(id=lease_id, bucket=seat.bucket, expire_time=lease_until)
                )
            return []

    async def release(self, lease_id: str) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(quota_leases).where(quota_leases.c.id == lease_id))

    async def used(self, bucket: str, window_start: int) -> int:
        async with self._db.read() as conn:
            return await self._used(conn, bucket, window_start)

    @staticmethod
    async def _used(conn: AsyncConnection, bucket: str, window_start: int) -> int:
        value = await conn.scalar(
            select(quota_usage.c.used).where(
                and_(quota_usage.c.bucket == bucket, quota_usage.c.window_start == window_start)
            )
        )
        return int(value or 0)

    async def _lock(self, conn: AsyncConnection, buckets: list[str]) -> None:
        if self._db.dialect != "postgresql":
            return
        for bucket in buckets:
            key = zlib.crc32(bucket.encode()) - (1 << 31)  # a signed 32-bit key
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
