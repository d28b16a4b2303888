"""The File resource: get, list, delete and download a project's files, and files the server writes
itself (a batch's results). Answers in File messages; knows nothing of HTTP.

Uploads are files/uploads.py, PDF processing files/processing.py, the text of a file in a prompt
files/prompt_text.py, expiry files/sweeper.py.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from localgem import errors, names
from localgem.files.convert import to_file
from localgem.files.wire import File
from localgem.storage.blobs import BlobStore
from localgem.storage.files import FileRepository
from localgem.storage.records import FileRecord, PageCursor
from localgem.types.paging import invalid_token, keyset_page

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int
    max_project_bytes: int
    file_ttl: timedelta
    upload_ttl: timedelta


class FileService:
    def __init__(self, files: FileRepository, blobs: BlobStore, limits: FileLimits, clock: Clock) -> None:
        self._files = files
        self._blobs = blobs
        self._limits = limits
        self._clock = clock

    async def create_generated(
        self, project: str, display_name: str, mime_type: str, chunks: AsyncIterator[bytes]
    ) -> File:
        """A file the server writes (a batch's results): source GENERATED, so clients may download it."""
        staging = names.new_id(24)
        try:
            await self._blobs.write_partial(staging, 0, chunks, sys.maxsize)
            sealed = await self._blobs.seal_partial(staging)
            now = self._clock()
            record = FileRecord(
                project=project,
                id=names.new_id(),
                display_name=display_name,
                mime_type=mime_type,
                size_bytes=sealed.size_bytes,
                sha256=sealed.sha256,
                state="ACTIVE",
                source="GENERATED",
                create_time=now,
                update_time=now,
                expire_time=now + self._limits.file_ttl,
            )
            await self._files.add(record, lambda: self._blobs.publish(staging, sealed.sha256))
        finally:
            await self._blobs.discard_partial(staging)
        return to_file(record)

    async def get(self, project: str, name: str) -> File:
        return to_file(await self._record(project, name))

    async def page(self, project: str, page_size: int | None, page_token: str | None) -> tuple[list[File], str | None]:
        """Newest first; the token holds where the page ended, so files added meanwhile shift nothing."""
        now = self._clock()

        async def fetch(limit: int, after: str | None) -> list[FileRecord]:
            return await self._files.page(project, now, limit, _cursor(after) if after is not None else None)

        records, token = await keyset_page(
            fetch, page_size, page_token, default_size=10, max_size=100, position=_position
        )
        return [to_file(record) for record in records], token

    async def delete(self, project: str, name: str) -> None:
        file_id = names.lookup_id(name, "files", not_found)
        if await self._files.get(project, file_id, self._clock()) is None:
            raise not_found(file_id)
        await self._files.remove(project, file_id, self._blobs.delete)

    async def content(self, project: str, name: str) -> tuple[File, AsyncIterator[bytes]]:
        record = await self._record(project, name)
        return to_file(record), self._blobs.read(record.sha256)

    async def stored(self, project: str, name: str) -> FileRecord:
        """The file as stored (its blob's sha256: what other resources keep a reference to)."""
        return await self._record(project, name)

    async def _record(self, project: str, name: str) -> FileRecord:
        file_id = names.lookup_id(name, "files", not_found)
        record = await self._files.get(project, file_id, self._clock())
        if record is None:
            raise not_found(file_id)
        return record


def not_found(file_id: str) -> errors.PermissionDenied:
    """Google's answer for a file that does not exist, or that another project owns: the two look alike."""
    return errors.PermissionDenied(
        f"You do not have permission to access the File {file_id[:100]} or it may not exist."
    )


def _position(record: FileRecord) -> str:
    return f"{record.create_time.isoformat()}|{record.id}"


def _cursor(position: str) -> PageCursor:
    when, _, file_id = position.partition("|")
    try:
        cursor = PageCursor(datetime.fromisoformat(when), file_id)
    except ValueError:
        raise invalid_token() from None
    if cursor.create_time.tzinfo is None or not names.is_resource_id(file_id):
        raise invalid_token()
    return cursor
