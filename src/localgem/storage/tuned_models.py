"""Tuned models. Each is trained as a leased operation (kind ``tune``): a server trains it only while it holds its
lease, and only the lease holder records its progress and makes it ACTIVE or FAILED. Its LoRA adapter is a blob
(``lock_blob`` / ``release_blob`` count it as a user); its permissions are in a table of their own."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from localgem.storage.corpora import Exists
from localgem.storage.database import Database
from localgem.storage.files import DropBytes, StoreBytes, lock_blob, release_blob
from localgem.storage.permissions import PermissionRepository, SqlPermissions
from localgem.storage.records import TunedModelRecord
from localgem.storage.tables import tuned_model_permissions as permissions
from localgem.storage.tables import tuned_models as models

CREATING, ACTIVE, FAILED = "CREATING", "ACTIVE", "FAILED"

__all__ = ["ACTIVE", "CREATING", "FAILED", "Exists", "SqlTunedModelRepository", "TunedModelRepository"]


class TunedModelRepository(PermissionRepository, Protocol):
    async def add(self, record: TunedModelRecord) -> None: ...
    async def get(self, model_id: str) -> TunedModelRecord | None: ...
    async def visible(self, project: str) -> list[TunedModelRecord]: ...
    async def update(self, model_id: str, changes: dict[str, Any], now: datetime) -> None: ...
    async def transfer(self, model_id: str, project: str, now: datetime) -> None: ...
    async def remove(self, model_id: str, drop_bytes: DropBytes) -> bool: ...
    async def note(self, owner: str, record: TunedModelRecord, **changes: Any) -> bool: ...
    async def attach(
        self, owner: str, record: TunedModelRecord, sha256: str, size: int, now: datetime, store_bytes: StoreBytes
    ) -> bool: ...
    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> TunedModelRecord | None: ...
    async def renew(
        self, owner: str, record: TunedModelRecord, now: datetime, until: datetime, results: Sequence[Any] = ()
    ) -> bool: ...
    async def finish(self, owner: str, record: TunedModelRecord, state: str, now: datetime) -> bool: ...
    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool: ...
    async def expire(self, created_before: datetime, now: datetime) -> int: ...


class SqlTunedModelRepository(SqlPermissions):
    def __init__(self, db: Database) -> None:
        super().__init__(db, permissions, "tuned_model_id")
        self._db = db

    async def add(self, record: TunedModelRecord) -> None:
        try:
            async with self._db.begin() as conn:
                await conn.execute(insert(models).values(**asdict(record)))
        except IntegrityError as exc:
            raise Exists() from exc

    async def get(self, model_id: str) -> TunedModelRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(models).where(models.c.id == model_id))).first()
        return TunedModelRecord(**row._mapping) if row else None

    async def visible(self, project: str) -> list[TunedModelRecord]:
        """The project's own tuned models and those shared with it (or with everyone), oldest first."""
        p = permissions.c
        shared = select(p.tuned_model_id).where(or_(p.grantee == project, p.grantee_type == "EVERYONE"))
        query = (
            select(models)
            .where(or_(models.c.project == project, models.c.id.in_(shared)))
            .order_by(models.c.create_time, models.c.id)
        )
        async with self._db.read() as conn:
            return [TunedModelRecord(**row._mapping) for row in await conn.execute(query)]

    async def update(self, model_id: str, changes: dict[str, Any], now: datetime) -> None:
        async with self._db.begin() as conn:
            await conn.execute(update(models).where(models.c.id == model_id).values(**changes, update_time=now))

    async def transfer(self, model_id: str, project: str, now: datetime) -> None:
        """The new owner's own permissions go (it owns the model now)."""
        async with self._db.begin() as conn:
            await conn.execute(update(models).where(models.c.id == model_id).values(project=project, update_time=now))
            mine = and_(permissions.c.tuned_model_id == model_id, permissions.c.grantee == project)
            await conn.execute(delete(permissions).where(mine))

    async def remove(self, model_id: str, drop_bytes: DropBytes) -> bool:
        async with self._db.begin() as conn:
            adapter = await conn.scalar(select(models.c.adapter).where(models.c.id == model_id))
            removed = await conn.execute(delete(models).where(models.c.id == model_id))
            await conn.execute(delete(permissions).where(permissions.c.tuned_model_id == model_id))
            if adapter is not None:
                await release_blob(conn, adapter, drop_bytes)
        return removed.rowcount == 1

    async def note(self, owner: str, record: TunedModelRecord, **changes: Any) -> bool:
        """Records training progress (snapshots, start time, why it failed), if ``owner`` still holds the lease."""
        async with self._db.begin() as conn:
            return (await conn.execute(update(models).where(_held(owner, record)).values(**changes))).rowcount == 1

    async def attach(
        self, owner: str, record: TunedModelRecord, sha256: str, size: int, now: datetime, store_bytes: StoreBytes
    ) -> bool:
        """The trained adapter becomes the model's, its bytes stored while the blob's row is held (see
        ``lock_blob``), if ``owner`` still holds the lease; else nothing is stored."""
        async with self._db.begin() as conn:
            if (await conn.execute(select(models.c.id).where(_held(owner, record)).with_for_update())).first() is None:
                return False
            await lock_blob(conn, sha256, size, now)
            await store_bytes()
            await conn.execute(update(models).where(_held(owner, record)).values(adapter=sha256))
        return True

    # The operations runner's lease protocol (see operations.runner.OperationStore).

    async def claim(
        self, owner: str, now: datetime, until: datetime, kinds: Collection[str] | None = None
    ) -> TunedModelRecord | None:
        if kinds is not None and "tune" not in kinds:
            return None
        c = models.c
        free = and_(c.state == CREATING, or_(c.lease_until.is_(None), c.lease_until < now))
        async with self._db.read() as conn:
            found = [row[0] for row in await conn.execute(select(c.id).where(free).order_by(c.create_time).limit(8))]
        for model_id in found:
            take = update(models).where(c.id == model_id, free).values(lease_owner=owner, lease_until=until)
            async with self._db.begin() as conn:
                if (await conn.execute(take)).rowcount == 1:
                    row = (await conn.execute(select(models).where(c.id == model_id))).one()
                    return TunedModelRecord(**row._mapping)
        return None

    async def renew(
        self, owner: str, record: TunedModelRecord, now: datetime, until: datetime, results: Sequence[Any] = ()
    ) -> bool:
        changes: dict[str, Any] = {"lease_until": until}
        for result in results:  # progress to record with the renewal: dicts of column values
            changes.update(result)
        async with self._db.begin() as conn:
            return (await conn.execute(update(models).where(_held(owner, record)).values(**changes))).rowcount == 1

    async def finish(self, owner: str, record: TunedModelRecord, state: str, now: datetime) -> bool:
        query = (
            update(models)
            .where(_held(owner, record))
            .values(state=state, complete_time=now, update_time=now, lease_owner=None, lease_until=None)
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def cancel(self, project: str, operation_id: str, now: datetime) -> bool:
        c = models.c
        query = (
            update(models)
            .where(c.operation_id == operation_id, c.state == CREATING)
            .values(
                state=FAILED,
                error="CANCELLED: the tuning job was cancelled.",
                complete_time=now,
                update_time=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def expire(self, created_before: datetime, now: datetime) -> int:
        c = models.c
        query = (
            update(models)
            .where(c.state == CREATING, c.create_time < created_before)
            .values(
                state=FAILED,
                error="DEADLINE_EXCEEDED: the tuning job did not finish in time.",
                complete_time=now,
                update_time=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount


def _held(owner: str, record: TunedModelRecord) -> Any:
    c = models.c
    return and_(c.id == record.id, c.lease_owner == owner, c.state == CREATING)
