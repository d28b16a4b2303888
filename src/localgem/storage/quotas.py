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

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, or_, select, text, update
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
        """Takes every charge and seat, or none: the ones over their limit are returned (empty: all taken).
        Few statements on the common path (each is a round trip): one read of the counters, one of the seats."""
        async with self._db.begin() as conn:
            await self._lock(conn, sorted({c.bucket for c in charges} | {s.bucket for s in seats}))
            used = await self._counters(conn, charges)
            running = await self._running(conn, seats, now)
            if any(running[seat.bucket] >= seat.limit for seat in seats):
                # Seats of servers that died may hold it: drop the expired ones and count again.
                buckets = [seat.bucket for seat in seats]
                expired = and_(quota_leases.c.bucket.in_(buckets), quota_leases.c.expire_time <= now)
                await conn.execute(delete(quota_leases).where(expired))
                running = await self._running(conn, seats, now)
            exceeded: list[Charge | Seat] = [
                c for c in charges if used.get((c.bucket, c.window_start), 0) + c.amount > c.limit
            ]
            exceeded += [seat for seat in seats if running[seat.bucket] >= seat.limit]
            if exceeded:
                return exceeded
            counted = [c for c in charges if (c.bucket, c.window_start) in used]
            if counted:  # one statement for every counter that has a row in its window
                added = case(
                    *(
                        (and_(quota_usage.c.bucket == c.bucket, quota_usage.c.window_start == c.window_start), c.amount)
                        for c in counted
                    ),
                    else_=0,
                )
                await conn.execute(update(quota_usage).where(_keys(counted)).values(used=quota_usage.c.used + added))
            for charge in charges:
                if (charge.bucket, charge.window_start) not in used:  # a new window: earlier ones are done with
                    await conn.execute(
                        delete(quota_usage).where(
                            quota_usage.c.bucket == charge.bucket, quota_usage.c.window_start < charge.window_start
                        )
                    )
                    await conn.execute(
                        insert(quota_usage).values(
                            bucket=charge.bucket, window_start=charge.window_start, used=charge.amount
                        )
                    )
            if seats:
                await conn.execute(
                    insert(quota_leases),
                    [{"id": lease_id, "bucket": seat.bucket, "expire_time": lease_until} for seat in seats],
                )
            return []

    @staticmethod
    async def _counters(conn: AsyncConnection, charges: Sequence[Charge]) -> dict[tuple[str, int], int]:
        if not charges:
            return {}
        rows = await conn.execute(
            select(quota_usage.c.bucket, quota_usage.c.window_start, quota_usage.c.used).where(_keys(charges))
        )
        return {(bucket, start): int(used) for bucket, start, used in rows}

    @staticmethod
    async def _running(conn: AsyncConnection, seats: Sequence[Seat], now: datetime) -> dict[str, int]:
        if not seats:
            return {}
        buckets = [seat.bucket for seat in seats]
        rows = await conn.execute(
            select(quota_leases.c.bucket, func.count())
            .where(quota_leases.c.bucket.in_(buckets), quota_leases.c.expire_time > now)
            .group_by(quota_leases.c.bucket)
        )
        return {bucket: 0 for bucket in buckets} | {bucket: int(count) for bucket, count in rows}

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


def _keys(charges: Sequence[Charge]) -> ColumnElement[bool]:
    """The counter rows of these charges' windows."""
    return or_(*(and_(quota_usage.c.bucket == c.bucket, quota_usage.c.window_start == c.window_start) for c in charges))
