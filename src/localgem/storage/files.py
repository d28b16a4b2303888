"""The files repository, including the blob rows that let several files share one content."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from localgem.storage.database import Database
from localgem.storage.records import FileRecord, PageCursor
from localgem.storage.tables import blobs, file_search_documents, files, tuned_models, uploads

StoreBytes = Callable[[], Awaitable[None]]
DropBytes = Callable[[str], Awaitable[None]]


class FileExists(Exception):
    """A file with that id exists in the project."""


class FileRepository(Protocol):
    async def add(
        self, record: FileRecord, store_bytes: StoreBytes, *, finalizes_upload: str | None = None
    ) -> None: ...
    async def get(self, project: str, file_id: str, now: datetime) -> FileRecord | None: ...
    async def page(self, project: str, now: datetime, limit: int, after: PageCursor | None) -> list[FileRecord]: ...
    async def remove(self, project: str, file_id: str, drop_bytes: DropBytes) -> FileRecord | None: ...
    async def finish_processing(
        self,
        record: FileRecord,
        state: str,
        now: datetime,
        *,
        text_sha256: str | None,
        error: str | None,
        text_size: int = 0,
        store_text: StoreBytes | None = None,
    ) -> None: ...
    async def processing(self) -> list[FileRecord]: ...
    async def expired(self, now: datetime, limit: int) -> list[FileRecord]: ...
    async def usage(self, project: str, now: datetime) -> int: ...
    async def blob_known(self, sha256: str) -> bool: ...


class SqlFileRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: FileRecord, store_bytes: StoreBytes, *, finalizes_upload: str | None = None) -> None:
        try:
            async with self._db.begin() as conn:
                if await conn.scalar(select(files.c.id).where(_key(record.project, record.id))) is not None:
                    raise FileExists(record.id)
                await lock_blob(conn, record.sha256, record.size_bytes, record.create_time)
                await store_bytes()
                await conn.execute(insert(files).values(**asdict(record)))
                if finalizes_upload is not None:
                    await conn.execute(update(uploads).where(uploads.c.id == finalizes_upload).values(finalized=True))
        except IntegrityError as exc:  # lost a race for the same id with another process
            raise FileExists(record.id) from exc

    async def _lock_blob(self, conn: AsyncConnection, sha256: str, size: int, now: datetime) -> None:
        """Hold the blob's row until commit, so a concurrent delete of the last file using it cannot
        remove the bytes between their being stored and this file's record committing."""
        while True:
            found = await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == sha256).with_for_update())
            if found is not None:
                return
            inserted = await conn.execute(
                _insert_ignore(conn, blobs).values(sha256=sha256, size_bytes=size, create_time=now)
            )
            if inserted.rowcount:
                return

    async def get(self, project: str, file_id: str, now: datetime) -> FileRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(files).where(_key(project, file_id), files.c.expire_time > now))).first()
        return _record(row) if row else None

    async def page(self, project: str, now: datetime, limit: int, after: PageCursor | None) -> list[FileRecord]:
        query = select(files).where(files.c.project == project, files.c.expire_time > now)
        if after is not None:
            query = query.where(
                or_(
                    files.c.create_time < after.create_time,
                    and_(files.c.create_time == after.create_time, files.c.id < after.id),
                )
            )
        query = query.order_by(files.c.create_time.desc(), files.c.id.desc()).limit(limit)
        async with self._db.read() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def remove(self, project: str, file_id: str, drop_bytes: DropBytes) -> FileRecord | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(select(files).where(_key(project, file_id)))).first()
            if row is None:
                return None
            record = _record(row)
            await conn.execute(delete(files).where(_key(project, file_id)))
            for sha in {record.sha256, record.text_sha256} - {None}:
                assert sha is not None
                await release_blob(conn, sha, drop_bytes)
        return record

    async def _release_blob(self, conn: AsyncConnection, sha256: str, drop_bytes: DropBytes) -> None:
        locked = await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == sha256).with_for_update())
        users = await conn.scalar(
            select(func.count()).select_from(files).where(or_(files.c.sha256 == sha256, files.c.text_sha256 == sha256))
        )
        if locked is not None and users == 0:
            await drop_bytes(sha256)
            await conn.execute(delete(blobs).where(blobs.c.sha256 == sha256))

    async def finish_processing(
        self,
        record: FileRecord,
        state: str,
        now: datetime,
        *,
        text_sha256: str | None,
        error: str | None,
        text_size: int = 0,
        store_text: StoreBytes | None = None,
    ) -> None:
        async with self._db.begin() as conn:
            current = await conn.scalar(select(files.c.state).where(_key(record.project, record.id)))
            if current != "PROCESSING":  # deleted (or finished by another process) meanwhile
                return
            if text_sha256 is not None and store_text is not None:
                await lock_blob(conn, text_sha256, text_size, now)
                await store_text()
            await conn.execute(
                update(files)
                .where(_key(record.project, record.id))
                .values(state=state, text_sha256=text_sha256, error=error, update_time=now)
            )

    async def processing(self) -> list[FileRecord]:
        async with self._db.read() as conn:
            return [_record(row) for row in await conn.execute(select(files).where(files.c.state == "PROCESSING"))]

    async def expired(self, now: datetime, limit: int) -> list[FileRecord]:
        query = select(files).where(files.c.expire_time <= now).order_by(files.c.expire_time).limit(limit)
        async with self._db.read() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def usage(self, project: str, now: datetime) -> int:
        query = select(func.coalesce(func.sum(files.c.size_bytes), 0)).where(
            files.c.project == project, files.c.expire_time > now
        )
        async with self._db.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def blob_known(self, sha256: str) -> bool:
        async with self._db.read() as conn:
            return await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == sha256)) is not None


async def lock_blob(conn: AsyncConnection, sha256: str, size: int, now: datetime) -> None:
    """Hold the blob's row until commit, so a concurrent delete of the last record using it cannot
    remove the bytes between their being stored and the new record committing."""
    while True:
        found = await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == sha256).with_for_update())
        if found is not None:
            return
        row = {"sha256": sha256, "size_bytes": size, "create_time": now}
        inserted = await conn.execute(_insert_ignore(conn, blobs).values(**row))
        if inserted.rowcount:
            return


async def release_blob(conn: AsyncConnection, sha256: str, drop_bytes: DropBytes) -> None:
    """Drops a blob once no file, File Search document or tuned model uses it (call after removing a user)."""
    locked = await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == sha256).with_for_update())
    file_users = await conn.scalar(
        select(func.count()).select_from(files).where(or_(files.c.sha256 == sha256, files.c.text_sha256 == sha256))
    )
    document_users = await conn.scalar(
        select(func.count()).select_from(file_search_documents).where(file_search_documents.c.sha256 == sha256)
    )
    model_users = await conn.scalar(
        select(func.count()).select_from(tuned_models).where(tuned_models.c.adapter == sha256)
    )
    if locked is not None and file_users == 0 and document_users == 0 and model_users == 0:
        await drop_bytes(sha256)
        await conn.execute(delete(blobs).where(blobs.c.sha256 == sha256))


def _key(project: str, file_id: str):  # noqa: ANN202 - a SQL expression
    return and_(files.c.project == project, files.c.id == file_id)


def _record(row) -> FileRecord:  # noqa: ANN001
    return FileRecord(**row._mapping)


def _insert_ignore(conn: AsyncConnection, table):  # noqa: ANN001, ANN202
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()
