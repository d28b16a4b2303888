"""The Files API: resumable, multipart and one-shot uploads, get/list/delete, expiry, and the text
of a file for prompts. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import mimetypes
import re
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from localgem import errors, names
from localgem.files import documents
from localgem.storage.blobs import BlobStore, StorageFull, TooLarge
from localgem.storage.files import FileExists, FileRepository
from localgem.storage.records import FileRecord, PageCursor, UploadRecord
from localgem.storage.uploads import UploadRepository

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_FILE_URI = re.compile(r"(?:^|/)files/([^/?#]+)$")
#: Blobs nobody references are removed only once this old, so a just-stored blob awaiting its record stays.
_ORPHAN_GRACE_S = 3600.0
_SWEEP_BATCH = 500
#: A file larger than this cannot fit any model's context as text; refuse before reading it.
_MAX_PROMPT_FILE_BYTES = 64 * 1024 * 1024
#: PDFs are parsed in memory; larger ones fail processing instead of exhausting it.
_MAX_PDF_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int
    max_project_bytes: int
    file_ttl: timedelta
    upload_ttl: timedelta


@dataclass(frozen=True)
class Proposal:
    """What a client asked for at the start of an upload (all optional)."""

    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    file_name: str | None = None  # the uploaded file's base name (X-Goog-Upload-File-Name)


@dataclass(frozen=True)
class UploadState:
    """An upload session as the protocol reports it: bytes acknowledged, and the file once final."""

    received: int
    file: FileRecord | None = None


@dataclass(frozen=True)
class SweepReport:
    files: int = 0
    uploads: int = 0
    blobs: int = 0


class FileService:
    def __init__(
        self, files: FileRepository, uploads: UploadRepository, blobs: BlobStore, limits: FileLimits, clock: Clock
    ) -> None:
        self._files = files
        self._uploads = uploads
        self._blobs = blobs
        self._limits = limits
        self._clock = clock
        self._session_locks: dict[str, asyncio.Lock] = {}
        self._processing: set[asyncio.Task[None]] = set()

    # -- uploads ---------------------------------------------------------------------------------

    async def start_upload(self, project: str, proposal: Proposal) -> tuple[str, UploadRecord]:
        """Opens a resumable session; returns (the secret for the upload URL, the session)."""
        file_id = names.resource_id(proposal.name, "files", field="file.name") if proposal.name else names.new_id()
        size = proposal.size_bytes
        if size is not None:
            if size < 0:
                raise errors.invalid_field("file.size_bytes", "file.size_bytes must not be negative.")
            if size > self._limits.max_file_bytes:
                raise errors.invalid_field(
                    "file.size_bytes",
                    f"File size {size} bytes exceeds the maximum of {self._limits.max_file_bytes} bytes per file.",
                )
        now = self._clock()
        if proposal.name and (
            await self._files.get(project, file_id, now) or await self._uploads.pending_for(project, file_id, now)
        ):
            raise errors.AlreadyExists(f"File files/{file_id} already exists.")
        used = await self._files.usage(project, now) + await self._uploads.pending_bytes(project, now)
        if used + (size or 0) > self._limits.max_project_bytes:
            raise errors.ResourceExhausted(
                f"Storage quota exceeded: the project stores {used} bytes of its "
                f"{self._limits.max_project_bytes}; this upload needs {size or 0} more.",
                [errors.error_info("STORAGE_QUOTA_EXCEEDED")],
            )
        token = secrets.token_urlsafe(32)
        record = UploadRecord(
            id=names.new_id(20),
            token_digest=_digest(token),
            project=project,
            file_id=file_id,
            display_name=proposal.display_name,
            mime_type=_mime_type(proposal),
            declared_size=size,
            received=0,
            create_time=now,
            expire_time=now + self._limits.upload_ttl,
        )
        await self._blobs.write_partial(record.id, 0, _no_chunks(), 0)
        await self._uploads.add(record)
        return token, record

    async def upload(
        self, token: str, offset: int | None, chunks: AsyncIterator[bytes], *, finalize: bool
    ) -> UploadState:
        session = await self._session(token)
        async with self._lock(session.id):
            session = await self._session(token)
            if session.finalized:
                return UploadState(session.received, await self._finished_file(session))
            if offset is not None and offset != session.received:
                raise errors.InvalidArgument(
                    f"X-Goog-Upload-Offset {offset} does not match the {session.received} bytes received; "
                    "send X-Goog-Upload-Command: query to resume."
                )
            limit = session.declared_size if session.declared_size is not None else self._limits.max_file_bytes
            try:
                received = await self._blobs.write_partial(session.id, session.received, chunks, limit)
            except TooLarge:
                raise errors.InvalidArgument(
                    f"The upload is larger than its declared size of {limit} bytes."
                    if session.declared_size is not None
                    else f"The upload is larger than the maximum of {limit} bytes per file."
                ) from None
            except StorageFull:
                raise errors.ResourceExhausted(
                    "The server ran out of storage space while receiving this chunk; nothing of it was kept. "
                    f"Resume from offset {session.received} once space is available.",
                    [errors.error_info("STORAGE_FULL")],
                ) from None
            if received != session.received and not await self._uploads.advance(session.id, session.received, received):
                raise errors.Aborted("The upload session was changed concurrently; query it and resume.")
            session = replace(session, received=received)
            if not finalize:
                return UploadState(received)
            return UploadState(received, await self._finalize(session))

    async def query(self, token: str) -> UploadState:
        session = await self._session(token)
        if session.finalized:
            return UploadState(session.received, await self._finished_file(session))
        return UploadState(session.received)

    async def cancel(self, token: str) -> None:
        session = await self._session(token)
        async with self._lock(session.id):
            if not session.finalized:
                await self._uploads.remove(session.id)
                await self._blobs.discard_partial(session.id)
        self._session_locks.pop(session.id, None)

    async def create(self, project: str, proposal: Proposal, chunks: AsyncIterator[bytes]) -> FileRecord:
        """A one-shot (media or multipart) upload: the same path as a resumable upload in one request."""
        token, _ = await self.start_upload(project, proposal)
        try:
            state = await self.upload(token, 0, chunks, finalize=True)
        except BaseException:
            # Nobody can resume a one-shot upload: free its quota and bytes now, not at expiry.
            await asyncio.shield(self.cancel(token))
            raise
        assert state.file is not None
        return state.file

    async def _session(self, token: str) -> UploadRecord:
        session = await self._uploads.by_token(_digest(token), self._clock())
        if session is None:
            raise errors.NotFound("The upload session does not exist or has expired.")
        return session

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._session_locks.setdefault(session_id, asyncio.Lock())

    async def _finalize(self, session: UploadRecord) -> FileRecord:
        if session.declared_size is not None and session.received != session.declared_size:
            raise errors.InvalidArgument(
                f"Cannot finalize: {session.received} bytes received of the {session.declared_size} declared."
            )
        sealed = await self._blobs.seal_partial(session.id)
        if sealed.size_bytes != session.received:
            raise errors.DataLoss(
                f"Upload {session.id}: {sealed.size_bytes} bytes stored, {session.received} acknowledged."
            )
        now = self._clock()
        record = FileRecord(
            project=session.project,
            id=session.file_id,
            display_name=session.display_name,
            mime_type=session.mime_type,
            size_bytes=sealed.size_bytes,
            sha256=sealed.sha256,
            state="PROCESSING" if documents.base_type(session.mime_type) == documents.PDF else "ACTIVE",
            source="UPLOADED",
            create_time=now,
            update_time=now,
            expire_time=now + self._limits.file_ttl,
        )
        try:
            await self._files.add(
                record, lambda: self._blobs.publish(session.id, sealed.sha256), finalizes_upload=session.id
            )
        except FileExists:
            raise errors.AlreadyExists(f"File files/{record.id} already exists.") from None
        self._session_locks.pop(session.id, None)
        if record.state == "PROCESSING":
            self._start_processing(record)
        return record

    async def create_generated(
        self, project: str, display_name: str, mime_type: str, chunks: AsyncIterator[bytes]
    ) -> FileRecord:
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
        return record

    async def _finished_file(self, session: UploadRecord) -> FileRecord:
        record = await self._files.get(session.project, session.file_id, self._clock())
        if record is None:
            raise errors.NotFound(f"File files/{session.file_id} was uploaded but no longer exists.")
        return record

    # -- processing (PDF text extraction) -------------------------------------------------------

    def _start_processing(self, record: FileRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._process(record))
        self._processing.add(task)
        task.add_done_callback(self._processing.discard)

    async def resume_processing(self) -> None:
        """After a restart: files left PROCESSING are processed again."""
        for record in await self._files.processing():
            self._start_processing(record)

    async def _process(self, record: FileRecord) -> None:
        if record.size_bytes > _MAX_PDF_BYTES:
            message = f"PDF of {record.size_bytes} bytes: text is extracted from PDFs up to {_MAX_PDF_BYTES} bytes."
            await self._files.finish_processing(record, "FAILED", self._clock(), text_sha256=None, error=message)
            return
        try:
            text = await asyncio.to_thread(documents.pdf_text, await self._blobs.read_all(record.sha256))
        except ValueError as exc:
            await self._files.finish_processing(record, "FAILED", self._clock(), text_sha256=None, error=str(exc))
            return
        data = text.encode("utf-8")
        staging = names.new_id(24)
        await self._blobs.write_partial(staging, 0, _chunks(data), len(data))
        sealed = await self._blobs.seal_partial(staging)
        await self._files.finish_processing(
            record,
            "ACTIVE",
            self._clock(),
            text_sha256=sealed.sha256,
            error=None,
            text_size=sealed.size_bytes,
            store_text=lambda: self._blobs.publish(staging, sealed.sha256),
        )
        await self._blobs.discard_partial(staging)  # if the file was deleted meanwhile, nothing was published

    async def close(self) -> None:
        for task in list(self._processing):
            task.cancel()
        await asyncio.gather(*self._processing, return_exceptions=True)

    # -- the resource ----------------------------------------------------------------------------

    async def get(self, project: str, name: str) -> FileRecord:
        file_id = names.lookup_id(name, "files", _not_found)
        record = await self._files.get(project, file_id, self._clock())
        if record is None:
            raise _not_found(file_id)
        return record

    async def page(
        self, project: str, page_size: int | None, page_token: str | None
    ) -> tuple[list[FileRecord], str | None]:
        if page_size is not None and page_size < 0:
            raise errors.invalid_field("page_size", "page_size must not be negative.")
        size = min(page_size or 10, 100)
        after = _decode_cursor(page_token) if page_token else None
        records = await self._files.page(project, self._clock(), size + 1, after)
        if len(records) <= size:
            return records, None
        last = records[size - 1]
        return records[:size], _encode_cursor(PageCursor(last.create_time, last.id))

    async def delete(self, project: str, name: str) -> None:
        file_id = names.lookup_id(name, "files", _not_found)
        if await self._files.get(project, file_id, self._clock()) is None:
            raise _not_found(file_id)
        await self._files.remove(project, file_id, self._blobs.delete)

    async def content(self, project: str, name: str) -> tuple[FileRecord, AsyncIterator[bytes]]:
        record = await self.get(project, name)
        return record, self._blobs.read(record.sha256)

    async def prompt_text(self, project: str, file_uri: str, mime_type: str | None, where: str) -> str:
        """The text a fileData part puts into the prompt; 403 for a file the project cannot see."""
        match = _FILE_URI.search(file_uri.strip())
        if match is None:
            raise errors.invalid_field(
                f"{where}.file_uri",
                f"Unsupported file uri {file_uri!r} at {where}.file_uri: use the uri of a file uploaded "
                "with the Files API (…/files/<id>).",
            )
        file_id = match.group(1)
        record = await self._files.get(project, file_id, self._clock()) if names.is_resource_id(file_id) else None
        if record is None:
            raise _not_found(file_id)
        if record.state != "ACTIVE":
            raise errors.FailedPrecondition(f"The File {file_id} is not in an ACTIVE state and usage is not allowed.")
        mime = mime_type or record.mime_type
        if record.text_sha256 is not None:
            return (await self._blobs.read_all(record.text_sha256)).decode("utf-8")
        if not documents.is_readable(mime):
            raise documents.unreadable(f"{where}.file_data", mime)
        if record.size_bytes > _MAX_PROMPT_FILE_BYTES:
            raise errors.invalid_field(
                f"{where}.file_data",
                f"File {file_id} ({record.size_bytes} bytes) is too large to read into a prompt.",
            )
        return documents.document_text(await self._blobs.read_all(record.sha256), mime, f"{where}.file_data")

    # -- expiry ----------------------------------------------------------------------------------

    async def sweep(self) -> SweepReport:
        """Deletes expired files (and bytes no file uses), expired upload sessions, and stray bytes."""
        now = self._clock()
        removed_files = 0
        for record in await self._files.expired(now, _SWEEP_BATCH):
            if await self._files.remove(record.project, record.id, self._blobs.delete) is not None:
                removed_files += 1
        expired_uploads = await self._uploads.expired(now, _SWEEP_BATCH)
        for session in expired_uploads:
            await self._uploads.remove(session.id)
            await self._blobs.discard_partial(session.id)
            self._session_locks.pop(session.id, None)
        live_sessions = await self._uploads.ids()
        for upload_id in await self._blobs.partial_ids():
            if upload_id not in live_sessions and upload_id not in self._session_locks:
                await self._blobs.discard_partial(upload_id)
        stray = 0
        for sha in await self._blobs.stale_blobs(_ORPHAN_GRACE_S):
            if not await self._files.blob_known(sha):
                await self._blobs.delete(sha)
                stray += 1
        return SweepReport(removed_files, len(expired_uploads), stray)


def sha256_base64(record: FileRecord) -> str:
    """``sha256Hash`` as Google sends it: base64 of the hex digest's text."""
    return base64.b64encode(record.sha256.encode("ascii")).decode("ascii")


def _not_found(file_id: str) -> errors.PermissionDenied:
    """Google's answer for a file that does not exist, or that another project owns: the two look alike."""
    return errors.PermissionDenied(
        f"You do not have permission to access the File {file_id[:100]} or it may not exist."
    )


#: ``type/subtype`` (RFC 6838 names), optionally ``; parameter=value`` pairs.
_MIME_TYPE = re.compile(
    r"(?P<type>[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126})/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"""(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[^"\\\r\n]*"|[A-Za-z0-9!#$&^_.+-]+))*\s*;?\s*"""
)
#: IANA's top-level media types: Google refuses others (``bad/mime_type``) but takes any subtype
#: (``application/cu-seeme`` uploads; whether a model can read it is decided when it is used).
_TOP_LEVEL_TYPES = frozenset(
    {"application", "audio", "font", "haptics", "image", "message", "model", "multipart", "text", "video"}
)


def supported_mime_type(value: str) -> str:
    """``value`` if it is a MIME type Google would store, else Google's 400."""
    match = _MIME_TYPE.fullmatch(value.strip())
    if match is None or match.group("type").lower() not in _TOP_LEVEL_TYPES:
        raise errors.InvalidArgument(f"Unsupported MIME type: {value[:200]}")
    return value.strip()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _mime_type(proposal: Proposal) -> str:
    if proposal.mime_type:
        return supported_mime_type(proposal.mime_type)
    for name in (proposal.file_name, proposal.display_name):
        if name and (guessed := mimetypes.guess_type(name)[0]):
            return guessed
    return "application/octet-stream"


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _encode_cursor(cursor: PageCursor) -> str:
    raw = f"{cursor.create_time.isoformat()}|{cursor.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> PageCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, _, file_id = raw.partition("|")
        cursor = PageCursor(datetime.fromisoformat(when), file_id)
        if cursor.create_time.tzinfo is not None and names.is_resource_id(file_id):
            return cursor
    except (ValueError, UnicodeDecodeError, binascii.Error):
        pass
    raise errors.invalid_field("page_token", "Invalid page_token.")
