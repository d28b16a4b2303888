"""Upload sessions: start (quota and name checks, an unguessable secret), append chunks at the
acknowledged offset, query, cancel, and finalize into a file; a one-shot upload is the same path in
one request. Expired sessions and their partial bytes are swept here too, since only this class knows
which sessions are in use. Answers in File messages; knows nothing of HTTP.

A session may end in something other than a file (a File Search document): its ``target`` names an
``UploadSink`` that takes the finished bytes and answers for the session from then on."""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from localgem import errors, names
from localgem.files.convert import to_file
from localgem.files.processing import FileProcessing
from localgem.files.service import Clock, FileLimits
from localgem.storage.blobs import BlobStore, Sealed, StorageFull, TooLarge
from localgem.storage.files import FileExists, FileRepository
from localgem.storage.records import FileRecord, UploadRecord
from localgem.storage.uploads import UploadRepository


@dataclass(frozen=True)
class Proposal:
    """What a client asked for at the start of an upload (all optional)."""

    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    file_name: str | None = None  # the uploaded file's base name (X-Goog-Upload-File-Name)
    #: Where the bytes go instead of a file: ``{"kind": <sink>, ...}`` for the sink's own use.
    target: dict[str, Any] | None = None
    #: The largest size the target takes (None: a file's limit).
    max_bytes: int | None = None


@dataclass(frozen=True)
class UploadState:
    """An upload session as the protocol reports it: bytes acknowledged, and what it made once final
    (a File, or the sink's answer, e.g. an Operation)."""

    received: int
    file: Any = None


class UploadSink(Protocol):
    """What a session with a ``target`` ends in."""

    async def finalize(self, session: UploadRecord, sealed: Sealed, publish: Any) -> Any:
        """Makes the target from the sealed bytes (``publish()`` stores them as the blob ``sealed.sha256``,
        to be called inside the transaction that records it) and marks ``session`` finalized with it."""
        ...

    async def finished(self, session: UploadRecord) -> Any:
        """What a finalized session made, as ``finalize`` answered."""
        ...


class UploadSessions:
    def __init__(
        self,
        files: FileRepository,
        uploads: UploadRepository,
        blobs: BlobStore,
        limits: FileLimits,
        clock: Clock,
        processing: FileProcessing,
    ) -> None:
        self._files = files
        self._uploads = uploads
        self._blobs = blobs
        self._limits = limits
        self._clock = clock
        self._processing = processing
        self._locks: dict[str, asyncio.Lock] = {}
        self._sinks: dict[str, UploadSink] = {}

    def add_sink(self, kind: str, sink: UploadSink) -> None:
        """Sessions whose target is of ``kind`` end in ``sink``."""
        self._sinks[kind] = sink

    async def start(self, project: str, proposal: Proposal) -> str:
        """Opens a resumable session; returns the secret for the upload URL."""
        file_id = names.resource_id(proposal.name, "files", field="file.name") if proposal.name else names.new_id()
        size = proposal.size_bytes
        max_bytes = min(self._limits.max_file_bytes, proposal.max_bytes or self._limits.max_file_bytes)
        if size is not None:
            if size < 0:
                raise errors.invalid_field("file.size_bytes", "file.size_bytes must not be negative.")
            if size > max_bytes:
                raise errors.invalid_field(
                    "file.size_bytes", f"File size {size} bytes exceeds the maximum of {max_bytes} bytes per file."
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
            target=json.dumps({**proposal.target, "max_bytes": max_bytes}) if proposal.target else None,
        )
        await self._blobs.write_partial(record.id, 0, _no_chunks(), 0)
        await self._uploads.add(record)
        return token

    async def upload(
        self, token: str, offset: int | None, chunks: AsyncIterator[bytes], *, finalize: bool
    ) -> UploadState:
        """Appends ``chunks`` at ``offset`` (the bytes acknowledged so far); with ``finalize``, the file."""
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
            limit = session.declared_size if session.declared_size is not None else _max_bytes(session, self._limits)
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
        self._locks.pop(session.id, None)

    async def create(self, project: str, proposal: Proposal, chunks: AsyncIterator[bytes]) -> Any:
        """A one-shot (media or multipart) upload: the same path as a resumable upload in one request."""
        token = await self.start(project, proposal)
        try:
            state = await self.upload(token, 0, chunks, finalize=True)
        except BaseException:
            # Nobody can resume a one-shot upload: free its quota and bytes now, not at expiry.
            await asyncio.shield(self.cancel(token))
            raise
        assert state.file is not None
        return state.file

    async def sweep(self, now: datetime, limit: int) -> int:
        """Removes up to ``limit`` expired sessions, and partial bytes no session owns; returns how many
        sessions expired."""
        expired = await self._uploads.expired(now, limit)
        for session in expired:
            await self._uploads.remove(session.id)
            await self._blobs.discard_partial(session.id)
            self._locks.pop(session.id, None)
        live = await self._uploads.ids()
        for upload_id in await self._blobs.partial_ids():
            # A session being written to holds a lock: its row may be newer than the list of ids.
            if upload_id not in live and upload_id not in self._locks:
                await self._blobs.discard_partial(upload_id)
        return len(expired)

    async def _session(self, token: str) -> UploadRecord:
        session = await self._uploads.by_token(_digest(token), self._clock())
        if session is None:
            raise errors.NotFound("The upload session does not exist or has expired.")
        return session

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def _finalize(self, session: UploadRecord) -> Any:
        if session.declared_size is not None and session.received != session.declared_size:
            raise errors.InvalidArgument(
                f"Cannot finalize: {session.received} bytes received of the {session.declared_size} declared."
            )
        sealed = await self._blobs.seal_partial(session.id)
        if sealed.size_bytes != session.received:
            raise errors.DataLoss(
                f"Upload {session.id}: {sealed.size_bytes} bytes stored, {session.received} acknowledged."
            )
        if session.target is not None:
            made = await self._sink(session).finalize(
                session, sealed, lambda: self._blobs.publish(session.id, sealed.sha256)
            )
            self._locks.pop(session.id, None)
            return made
        now = self._clock()
        record = FileRecord(
            project=session.project,
            id=session.file_id,
            display_name=session.display_name,
            mime_type=session.mime_type,
            size_bytes=sealed.size_bytes,
            sha256=sealed.sha256,
            state="PROCESSING" if self._processing.needed(session.mime_type) else "ACTIVE",
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
        self._locks.pop(session.id, None)
        if record.state == "PROCESSING":
            self._processing.start(record)
        return to_file(record)

    def _sink(self, session: UploadRecord) -> UploadSink:
        kind = json.loads(session.target or "{}").get("kind")
        if kind not in self._sinks:
            raise errors.FailedPrecondition(f"This server cannot finish uploads to a {kind}.")
        return self._sinks[kind]

    async def _finished_file(self, session: UploadRecord) -> Any:
        if session.target is not None:
            return await self._sink(session).finished(session)
        record = await self._files.get(session.project, session.file_id, self._clock())
        if record is None:
            raise errors.NotFound(f"File files/{session.file_id} was uploaded but no longer exists.")
        return to_file(record)


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


def _max_bytes(session: UploadRecord, limits: FileLimits) -> int:
    if session.target is not None:
        return int(json.loads(session.target).get("max_bytes") or limits.max_file_bytes)
    return limits.max_file_bytes


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
