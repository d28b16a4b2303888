"""Live API state: resumption handles with what they restore, and ephemeral auth tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, insert, select, update

from localgem.storage.database import Database
from localgem.storage.records import AuthTokenRecord, LiveStateRecord
from localgem.storage.tables import auth_tokens, live_sessions


class LiveStateRepository(Protocol):
    async def save(self, record: LiveStateRecord) -> None:
        """Store the session's latest state; its earlier handles stop working."""

    async def get(self, handle_digest: str) -> LiveStateRecord | None: ...
    async def sweep(self, now: datetime) -> int: ...


class SqlLiveStateRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, record: LiveStateRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(delete(live_sessions).where(live_sessions.c.session_id == record.session_id))
            await conn.execute(insert(live_sessions).values(**vars(record)))

    async def get(self, handle_digest: str) -> LiveStateRecord | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(live_sessions).where(live_sessions.c.handle_digest == handle_digest))
            ).first()
        return LiveStateRecord(**row._mapping) if row is not None else None

    async def sweep(self, now: datetime) -> int:
        async with self._db.begin() as conn:
            return (await conn.execute(delete(live_sessions).where(live_sessions.c.expire_time <= now))).rowcount


class AuthTokenRepository(Protocol):
    async def add(self, record: AuthTokenRecord) -> None: ...
    async def get(self, digest: str) -> AuthTokenRecord | None: ...
    async def take_use(self, digest: str) -> bool:
        """Spend one of a limited token's uses; False if none is left (an unlimited token always has one)."""

    async def sweep(self, now: datetime) -> int: ...


class SqlAuthTokenRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: AuthTokenRecord) -> None:
        async with self._db.begin() as conn:
            await conn.execute(insert(auth_tokens).values(**vars(record)))

    async def get(self, digest: str) -> AuthTokenRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(auth_tokens).where(auth_tokens.c.digest == digest))).first()
        return AuthTokenRecord(**row._mapping) if row is not None else None

    async def take_use(self, digest: str) -> bool:
        async with self._db.begin() as conn:
            uses = auth_tokens.c.uses_left
            spent = await conn.execute(
                update(auth_tokens).where(auth_tokens.c.digest == digest, uses > 0).values(uses_left=uses - 1)
            )
            if spent.rowcount:
                return True
            unlimited = await conn.scalar(
                select(auth_tokens.c.digest).where(auth_tokens.c.digest == digest, uses.is_(None))
            )
            return unlimited is not None

    async def sweep(self, now: datetime) -> int:
        async with self._db.begin() as conn:
            return (await conn.execute(delete(auth_tokens).where(auth_tokens.c.expire_time <= now))).rowcount
