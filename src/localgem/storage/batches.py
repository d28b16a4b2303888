"""Batches and their requests. A server runs a batch only while it holds the batch's lease, and
records each result once: a request that is done is never written again.

``SqlBatchRepository`` is also the store the operations runner (``operations.runner``) claims batches from:
``claim``, ``renew``, ``finish``, ``cancel`` and ``expire`` are its lease protocol."""

from __future__ import annotations

from collections.abc import AsyncIterable, Collection, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import Update, and_, case, delete, func, insert, or_, select, update

from localgem.storage.database import Database
from localgem.storage.records import BatchCounts, BatchItem, BatchRecord
from localgem.storage.tables import batch_requests, batches

RUNNABLE = ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")
FINAL = ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED")


class BatchRepository(Protocol):
    async def add(self, record: BatchRecord, items: AsyncIterable[list[BatchItem]]) -> BatchRecord: ...
    async def get(self, project: str, batch_id: str) -> BatchRecord | None: ...
    async def counts(self, project: str, batch_id: str) -> BatchCounts: ...
    async def items(
        self, project: str, batch_id: str, after: int = -1, limit: int | None = None
    ) -> list[BatchItem]: ...
    async def set_responses_file(self, project: str, batch_id: str, file_id: str) -> bool: ...
    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> BatchRecord | None: ...
    async def pending(self, project: str, batch_id: str, limit: int, after: int = -1) -> list[BatchItem]: ...
    async def record(
        self, owner: str, record: BatchRecord, results: list[BatchItem], now: datetime, until: datetime
    ) -> bool: ...
    async def renew(
        self, owner: str, record: BatchRecord, now: datetime, until: datetime, results: Sequence[BatchItem] = ()
    ) -> bool: ...
    async def finish(self, owner: str, record: BatchRecord, state: str, now: datetime) -> bool: ...
    async def all(self, project: str) -> list[BatchRecord]: ...
    async def cancel(self, project: str, batch_id: str, now: datetime) -> bool: ...
    async def remove(self, project: str, batch_id: str) -> bool: ...
    async def expire(self, created_before: datetime, now: datetime) -> int: ...
    async def rename(self, project: str, batch_id: str, changes: dict, now: datetime) -> bool: ...
    async def awaiting_webhooks(self, limit: int) -> list[BatchRecord]: ...
    async def unwritten_results(self, limit: int) -> list[BatchRecord]: ...


class SqlBatchRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: BatchRecord, items: AsyncIterable[list[BatchItem]]) -> BatchRecord:
        """The batch and all its requests, in one transaction; ``request_count`` is what ``items`` gave."""
        count = 0
        async with self._db.begin() as conn:
            async for group in items:
                rows = [{"project": record.project, "batch_id": record.id, **asdict(item)} for item in group]
                if rows:
                    await conn.execute(insert(batch_requests), rows)
                count += len(rows)
            record = replace(record, request_count=count)
            await conn.execute(insert(batches).values(**asdict(record)))
        return record

    async def get(self, project: str, batch_id: str) -> BatchRecord | None:
        query = select(batches).where(batches.c.project == project, batches.c.id == batch_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return BatchRecord(**row._mapping) if row else None

    async def counts(self, project: str, batch_id: str) -> BatchCounts:
        c = batch_requests.c
        query = select(
            func.coalesce(func.sum(case((c.done & c.error.is_(None), 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.done & c.error.is_not(None), 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.done, 0), else_=1)), 0),
        ).where(c.project == project, c.batch_id == batch_id)
        async with self._db.read() as conn:
            successful, failed, pending = (await conn.execute(query)).one()
        return BatchCounts(int(successful), int(failed), int(pending))

    async def items(self, project: str, batch_id: str, after: int = -1, limit: int | None = None) -> list[BatchItem]:
        """Requests in input order, from the one after position ``after``."""
        return await self._items(project, batch_id, None, limit, after)

    async def pending(self, project: str, batch_id: str, limit: int, after: int = -1) -> list[BatchItem]:
        """Requests not done yet, in input order, from the one after position ``after``."""
        return await self._items(project, batch_id, False, limit, after)

    async def _items(
        self, project: str, batch_id: str, done: bool | None, limit: int | None, after: int = -1
    ) -> list[BatchItem]:
        c = batch_requests.c
        query = select(c.position, c.request, c.metadata, c.response, c.error, c.done).where(
            c.project == project, c.batch_id == batch_id, c.position > after
        )
        if done is not None:
            query = query.where(c.done.is_(done))
        query = query.order_by(c.position).limit(limit)
        async with self._db.read() as conn:
            return [BatchItem(**row._mapping) for row in await conn.execute(query)]

    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> BatchRecord | None:
        """Take the next runnable batch (of one of ``kinds``, if given) whose lease is free or lapsed
        (compare-and-set on the lease)."""
        free = and_(batches.c.state.in_(RUNNABLE), or_(batches.c.lease_until.is_(None), batches.c.lease_until < now))
        if kinds is not None:
            free = and_(free, batches.c.kind.in_(list(kinds)))
        candidates = (
            select(batches.c.project, batches.c.id)
            .where(free)
            .order_by(batches.c.priority.desc(), batches.c.create_time)
            .limit(8)
        )
        async with self._db.read() as conn:
            found = (await conn.execute(candidates)).all()
        for project, batch_id in found:
            take = (
                update(batches)
                .where(batches.c.project == project, batches.c.id == batch_id, free)
                .values(lease_owner=owner, lease_until=until, state="BATCH_STATE_RUNNING", update_time=now)
            )
            async with self._db.begin() as conn:
                if (await conn.execute(take)).rowcount == 1:
                    row = (
                        await conn.execute(
                            select(batches).where(batches.c.project == project, batches.c.id == batch_id)
                        )
                    ).one()
                    return BatchRecord(**row._mapping)
        return None

    async def record(
        self, owner: str, record: BatchRecord, results: list[BatchItem], now: datetime, until: datetime
    ) -> bool:
        """Write finished requests and renew the lease, in one transaction; nothing if the lease was lost."""
        c = batch_requests.c
        async with self._db.begin() as conn:
            if not await _renew(conn, owner, record, now, until):
                return False
            for item in results:
                await conn.execute(
                    update(batch_requests)
                    .where(
                        c.project == record.project,
                        c.batch_id == record.id,
                        c.position == item.position,
                        c.done.is_(False),
                    )
                    .values(response=item.response, error=item.error, done=True)
                )
        return True

    async def renew(
        self, owner: str, record: BatchRecord, now: datetime, until: datetime, results: Sequence[BatchItem] = ()
    ) -> bool:
        """The lease's heartbeat: ``record`` with ``results`` (the runner's name for it)."""
        return await self.record(owner, record, list(results), now, until)

    async def finish(self, owner: str, record: BatchRecord, state: str, now: datetime) -> bool:
        query = (
            update(batches)
            .where(batches.c.project == record.project, batches.c.id == record.id, batches.c.lease_owner == owner)
            .values(state=state, end_time=now, update_time=now, lease_owner=None, lease_until=None)
        )
        return await self._changes_one(query)

    async def all(self, project: str) -> list[BatchRecord]:
        query = select(batches).where(batches.c.project == project).order_by(batches.c.create_time.desc(), batches.c.id)
        async with self._db.read() as conn:
            return [BatchRecord(**row._mapping) for row in await conn.execute(query)]

    async def cancel(self, project: str, batch_id: str, now: datetime) -> bool:
        """A pending or running batch stops: its runner's next write finds it cancelled and gives up."""
        query = (
            update(batches)
            .where(batches.c.project == project, batches.c.id == batch_id, batches.c.state.in_(RUNNABLE))
            .values(state="BATCH_STATE_CANCELLED", end_time=now, update_time=now, lease_owner=None, lease_until=None)
        )
        return await self._changes_one(query)

    async def remove(self, project: str, batch_id: str) -> bool:
        async with self._db.begin() as conn:
            await conn.execute(
                delete(batch_requests).where(batch_requests.c.project == project, batch_requests.c.batch_id == batch_id)
            )
            result = await conn.execute(delete(batches).where(batches.c.project == project, batches.c.id == batch_id))
        return result.rowcount == 1

    async def rename(self, project: str, batch_id: str, changes: dict, now: datetime) -> bool:
        """New display name and/or priority (the only fields a batch's owner may change)."""
        query = (
            update(batches)
            .where(batches.c.project == project, batches.c.id == batch_id)
            .values(**changes, update_time=now)
        )
        return await self._changes_one(query)

    async def set_responses_file(self, project: str, batch_id: str, file_id: str) -> bool:
        """Names the batch's results file, once: False if another process named one first."""
        query = (
            update(batches)
            .where(batches.c.project == project, batches.c.id == batch_id, batches.c.responses_file.is_(None))
            .values(responses_file=file_id)
        )
        return await self._changes_one(query)

    async def awaiting_webhooks(self, limit: int) -> list[BatchRecord]:
        """Batches in a final state whose webhook deliveries are not queued yet (see storage.webhooks); a
        batch read from a file waits for its results file, which its event names."""
        c = batches.c
        written = or_(c.input_file.is_(None), c.responses_file.is_not(None))
        query = select(batches).where(c.webhook_state == "PENDING", c.state.in_(FINAL), written)
        async with self._db.read() as conn:
            return [BatchRecord(**row._mapping) for row in await conn.execute(query.order_by(c.end_time).limit(limit))]

    async def unwritten_results(self, limit: int) -> list[BatchRecord]:
        """Batches read from a file that reached a final state without their results file written yet."""
        c = batches.c
        query = select(batches).where(c.state.in_(FINAL), c.input_file.is_not(None), c.responses_file.is_(None))
        async with self._db.read() as conn:
            return [BatchRecord(**row._mapping) for row in await conn.execute(query.order_by(c.end_time).limit(limit))]

    async def _changes_one(self, query: Update) -> bool:
        """Runs an UPDATE in its own transaction; whether it changed the one row it names."""
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def expire(self, created_before: datetime, now: datetime) -> int:
        query = (
            update(batches)
            .where(batches.c.state.in_(RUNNABLE), batches.c.create_time < created_before)
            .values(state="BATCH_STATE_EXPIRED", end_time=now, update_time=now, lease_owner=None, lease_until=None)
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount


async def _renew(conn, owner: str, record: BatchRecord, now: datetime, until: datetime) -> bool:
    query = (
        update(batches)
        .where(
            batches.c.project == record.project,
            batches.c.id == record.id,
            batches.c.lease_owner == owner,
            batches.c.state == "BATCH_STATE_RUNNING",
        )
        .values(lease_until=until, update_time=now)
    )
    return (await conn.execute(query)).rowcount == 1
