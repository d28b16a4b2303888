"""Generated files: each video job (``models.predictLongRunning``) is a row, run as a leased operation (kind
``video``): a server renders it only while it holds its lease, and only the lease holder records its progress and
makes it GENERATED (the video, a Files API file) or FAILED."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, delete, insert, or_, select, update

from localgem.storage.database import Database
from localgem.storage.records import GeneratedFileRecord
from localgem.storage.tables import generated_files as table

GENERATING, GENERATED, FAILED = "GENERATING", "GENERATED", "FAILED"


class GeneratedFileRepository(Protocol):
    async def add(self, record: GeneratedFileRecord) -> None: ...
    async def get(self, project: str, file_id: str) -> GeneratedFileRecord | None: ...
    async def by_operation(self, project: str, operation_id: str) -> GeneratedFileRecord | None: ...
    async def of_project(self, project: str, model: str | None = None) -> list[GeneratedFileRecord]: ...
    async def note(self, owner: str, record: GeneratedFileRecord, **changes: Any) -> bool: ...
    async def remove_expired(self, now: datetime) -> int: ...
    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> GeneratedFileRecord | None: ...
    async def renew(
        self, owner: str, record: GeneratedFileRecord, now: datetime, until: datetime, results: Sequence[Any] = ()
    ) -> bool: ...
    async def finish(self, owner: str, record: GeneratedFileRecord, state: str, now: datetime) -> bool: ...
    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool: ...
    async def expire(self, created_before: datetime, now: datetime) -> int: ...


class SqlGeneratedFileRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: GeneratedFileRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(insert(table).values(**asdict(record)))

    async def get(self, project: str, file_id: str) -> GeneratedFileRecord | None:
        return await self._one(and_(table.c.project == project, table.c.id == file_id))

    async def by_operation(self, project: str, operation_id: str) -> GeneratedFileRecord | None:
        return await self._one(and_(table.c.project == project, table.c.operation_id == operation_id))

    async def of_project(self, project: str, model: str | None = None) -> list[GeneratedFileRecord]:
        """Oldest first; only those made by ``model`` (a local id) if given."""
        query = select(table).where(table.c.project == project)
        if model is not None:
            query = query.where(table.c.model_id == model)
        async with self._db.read() as conn:
            rows = await conn.execute(query.order_by(table.c.create_time, table.c.id))
            return [GeneratedFileRecord(**row._mapping) for row in rows]

    async def note(self, owner: str, record: GeneratedFileRecord, **changes: Any) -> bool:
        """Records progress, the result or why it failed, if ``owner`` still holds the lease."""
        async with self._db.begin() as conn:
            return (await conn.execute(update(table).where(_held(owner, record)).values(**changes))).rowcount == 1

    async def remove_expired(self, now: datetime) -> int:
        """Jobs past their expiry that have ended (their video file expires with the Files API's own sweep)."""
        query = delete(table).where(table.c.expire_time < now, table.c.state != GENERATING)
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount

    async def _one(self, where: Any) -> GeneratedFileRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(table).where(where))).first()
        return GeneratedFileRecord(**row._mapping) if row else None

    # The operations runner's lease protocol (see operations.runner.OperationStore).

    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> GeneratedFileRecord | None:
        if kinds is not None and "video" not in kinds:
            return None
        c = table.c
        free = and_(c.state == GENERATING, or_(c.lease_until.is_(None), c.lease_until < now))
        async with self._db.read() as conn:
            found = [
                tuple(row)
                for row in await conn.execute(select(c.project, c.id).where(free).order_by(c.create_time).limit(8))
            ]
        for project, file_id in found:
            mine = and_(c.project == project, c.id == file_id)
            take = update(table).where(mine, free).values(lease_owner=owner, lease_until=until)
            async with self._db.begin() as conn:
                if (await conn.execute(take)).rowcount == 1:
                    row = (await conn.execute(select(table).where(mine))).one()
                    return GeneratedFileRecord(**row._mapping)
        return None

    async def renew(
        self, owner: str, record: GeneratedFileRecord, now: datetime, until: datetime, results: Sequence[Any] = ()
    ) -> bool:
        changes: dict[str, Any] = {"lease_until": until}
        for result in results:  # progress to record with the renewal: dicts of column values
            changes.update(result)
        async with self._db.begin() as conn:
            return (await conn.execute(update(table).where(_held(owner, record)).values(**changes))).rowcount == 1

    async def finish(self, owner: str, record: GeneratedFileRecord, state: str, now: datetime) -> bool:
        query = (
            update(table)
            .where(_held(owner, record))
            .values(state=state, update_time=now, lease_owner=None, lease_until=None)
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool:
        return await self._end(
            and_(table.c.project == project, table.c.operation_id == operation_id),
            "CANCELLED: the video job was cancelled.",
            now,
        )

    async def expire(self, created_before: datetime, now: datetime) -> int:
        return await self._end(
            table.c.create_time < created_before, "DEADLINE_EXCEEDED: the video job did not finish in time.", now
        )

    async def _end(self, where: Any, error: str, now: datetime) -> int:
        query = (
            update(table)
            .where(where, table.c.state == GENERATING)
            .values(state=FAILED, error=error, update_time=now, lease_owner=None, lease_until=None)
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount


def _held(owner: str, record: GeneratedFileRecord) -> Any:
    c = table.c
    return and_(c.project == record.project, c.id == record.id, c.lease_owner == owner, c.state == GENERATING)
