"""Permissions on a shared resource (a corpus, a tuned model): one table per collection, one repository over
any of them. A permission grants a project (``grantee``) or everyone (``grantee`` null, type EVERYONE) a role."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

from sqlalchemy import Table, and_, delete, insert, or_, select, update

from localgem.storage.database import Database
from localgem.storage.records import PermissionRecord


class PermissionRepository(Protocol):
    async def add_permission(self, record: PermissionRecord) -> None: ...
    async def permission(self, resource_id: str, permission_id: str) -> PermissionRecord | None: ...
    async def permissions(self, resource_id: str) -> list[PermissionRecord]: ...
    async def set_role(self, resource_id: str, permission_id: str, role: str) -> None: ...
    async def remove_permission(self, resource_id: str, permission_id: str) -> None: ...
    async def roles(self, resource_id: str, project: str) -> list[str]: ...
    async def readers(self) -> dict[str, list[str]]: ...


class SqlPermissions:
    """The permissions in ``table``, whose column ``key`` names the resource."""

    def __init__(self, db: Database, table: Table, key: str) -> None:
        self._db = db
        self._table = table
        self._key = table.c[key]

    async def add_permission(self, record: PermissionRecord) -> None:
        row = asdict(record)
        row[self._key.name] = row.pop("resource_id")
        async with self._db.begin() as conn:
            await conn.execute(insert(self._table).values(**row))

    async def permission(self, resource_id: str, permission_id: str) -> PermissionRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(self._table).where(self._one(resource_id, permission_id)))).first()
        return self._record(row) if row else None

    async def permissions(self, resource_id: str) -> list[PermissionRecord]:
        c = self._table.c
        query = select(self._table).where(self._key == resource_id).order_by(c.create_time, c.id)
        async with self._db.read() as conn:
            return [self._record(row) for row in await conn.execute(query)]

    async def set_role(self, resource_id: str, permission_id: str, role: str) -> None:
        async with self._db.begin() as conn:
            await conn.execute(update(self._table).where(self._one(resource_id, permission_id)).values(role=role))

    async def remove_permission(self, resource_id: str, permission_id: str) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(self._table).where(self._one(resource_id, permission_id)))

    async def roles(self, resource_id: str, project: str) -> list[str]:
        """The roles permissions grant ``project`` on the resource (its own, or everyone's)."""
        c = self._table.c
        mine = or_(c.grantee == project, c.grantee_type == "EVERYONE")
        async with self._db.read() as conn:
            return [row[0] for row in await conn.execute(select(c.role).where(self._key == resource_id, mine))]

    async def readers(self) -> dict[str, list[str]]:
        """Resource id → the grantees (projects, or ``*`` for everyone) of each of its permissions."""
        c = self._table.c
        found: dict[str, list[str]] = {}
        async with self._db.read() as conn:
            for resource_id, grantee in await conn.execute(select(self._key, c.grantee)):
                found.setdefault(resource_id, []).append(grantee or "*")
        return found

    def _one(self, resource_id: str, permission_id: str) -> Any:
        return and_(self._key == resource_id, self._table.c.id == permission_id)

    def _record(self, row: Any) -> PermissionRecord:
        fields = dict(row._mapping)
        return PermissionRecord(resource_id=fields.pop(self._key.name), **fields)
