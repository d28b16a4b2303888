"""The blob store: file bytes by content (sha256), and the partial bytes of uploads in progress.

Durability protocol (local disk): bytes go to ``partial/<upload id>`` and are fsynced before an upload
chunk is acknowledged; a finished upload is hashed, renamed into ``blobs/<aa>/<sha256>`` and the
directory fsynced — only then does the database record the file. A crash therefore leaves at worst
bytes without a record (swept later), never a record without its bytes.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from localgem.storage.direct_writes import Buffers, DirectWriter

SHA256 = re.compile(r"[0-9a-f]{64}")
UPLOAD_ID = re.compile(r"[a-z0-9]{12,40}")
_WRITE_BUFFER = 4 << 20
_READ_CHUNK = 1 << 20
_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}


class StorageFull(Exception):
    """The blob store has no room; what was being written has been rolled back."""


@dataclass(frozen=True)
class Sealed:
    sha256: str
    size_bytes: int


class BlobStore(Protocol):
    """Bytes by content, and the partial bytes of uploads in progress. Every backend passes
    tests/storage/test_blob_contract.py. Ids are checked: an upload id or sha256 of the wrong form is
    a ValueError before anything is touched. The store counts no users of a blob: the files repository
    does, and deletes a blob only with the last file using it."""

    async def write_partial(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Append ``chunks`` at ``offset`` (dropping anything after it), durably; returns the new size.
        On any failure, or past ``limit`` bytes in all, the partial is cut back to ``offset``."""
        ...

    async def seal_partial(self, upload_id: str) -> Sealed:
        """The sha256 and size of a partial's bytes; the partial stays until published or discarded."""
        ...

    async def publish(self, upload_id: str, sha256: str) -> None:
        """Make a sealed partial the blob ``sha256``, durably. Known content keeps its one copy and
        counts as new for ``stale_blobs``."""
        ...

    async def discard_partial(self, upload_id: str) -> None:
        """Drop a partial; nothing happens if there is none (it was published, or never written)."""
        ...

    async def partial_ids(self) -> list[str]: ...
    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; FileNotFoundError if there is no such blob."""
        ...

    async def read_all(self, sha256: str) -> bytes:
        """The blob's bytes; FileNotFoundError if there is no such blob."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove a blob; nothing happens if there is none."""
        ...

    async def local_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes, for readers that take a path (llama.cpp's LoRA adapter loader);
        FileNotFoundError if there is no such blob. A remote store fetches (and verifies) a cached copy."""
        ...

    async def stale_blobs(self, older_than_s: float) -> list[str]:
        """Blobs stored (or last published) more than ``older_than_s`` seconds ago."""
        ...

    async def prune_local_copies(self) -> int:
        """Drop the local copies ``local_path`` made of blobs that are gone from the store (another replica
        deleted them); how many went. A store whose blobs are local files keeps no copies."""
        ...


class TooLarge(Exception):
    """More bytes arrived than the upload may hold."""


class LocalBlobStore:
    """Blobs as files under ``root``. Every path is built from a validated id, never from raw input."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._partial = root / "partial"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._partial.mkdir(parents=True, exist_ok=True)
        # Running sha256 of each partial written by this process, with the size it covers: sealing then
        # needs no second read. After a restart or a rollback it is recomputed from the bytes.
        self._hashers: dict[str, tuple[int, Any]] = {}
        self._buffers = Buffers()

    def _partial_path(self, upload_id: str) -> Path:
        if not UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return self._partial / upload_id

    def _blob_path(self, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self._blobs / sha256[:2] / sha256

    async def write_partial(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes], limit: int) -> int:
        path = self._partial_path(upload_id)
        fd = await asyncio.to_thread(_open_at, path, offset)
        size = offset
        covered, hasher = self._hashers.pop(upload_id, (0, hashlib.sha256()))
        if covered != offset:
            hasher = None
        writing: asyncio.Future[int] | None = None  # the previous batch, written while the next arrives
        buffer = self._buffers.take()
        try:
            writer = DirectWriter(fd, offset, buffer)
            # Pieces are gathered and written a few MiB at a time, in a thread, overlapping the network:
            # fewer thread hops, the disk busy while the next batch is received.
            pending: list[bytes] = []
            pending_size = 0
            queued = 0
            async for chunk in chunks:
                if offset + queued + pending_size + len(chunk) > limit:
                    raise TooLarge(limit)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BUFFER:
                    if writing is not None:
                        size += await writing
                    writing = asyncio.ensure_future(asyncio.to_thread(_write_all, writer, pending, hasher))
                    queued += pending_size
                    pending, pending_size = [], 0
            if writing is not None:
                size += await writing
                writing = None
            size += await asyncio.to_thread(_write_last, writer, pending, hasher)
            await asyncio.to_thread(os.fsync, fd)
            if hasher is not None:
                self._hashers[upload_id] = (size, hasher)
            return size
        except BaseException as exc:
            if writing is not None:  # a thread cannot be stopped: let it finish before cutting back
                await asyncio.shield(asyncio.wait([writing]))
                if writing.done() and not writing.cancelled() and isinstance(writing.exception(), OSError):
                    exc = writing.exception() or exc
            await asyncio.shield(asyncio.to_thread(_truncate, fd, offset))
            if isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE:
                raise StorageFull(str(exc)) from exc
            raise
        finally:
            os.close(fd)
            if writing is None or writing.done():  # else a thread still reads it: let it go with the thread
                self._buffers.give(buffer)

    async def seal_partial(self, upload_id: str) -> Sealed:
        path = self._partial_path(upload_id)
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        covered, hasher = self._hashers.pop(upload_id, (-1, None))
        if hasher is not None and covered == size:
            return Sealed(hasher.hexdigest(), size)
        return await asyncio.to_thread(_hash_file, path)

    async def publish(self, upload_id: str, sha256: str) -> None:
        await asyncio.to_thread(self._publish, self._partial_path(upload_id), self._blob_path(sha256))

    @staticmethod
    def _publish(partial: Path, final: Path) -> None:
        if final.exists():
            # Same content already stored: keep it, and mark it fresh so the orphan sweep leaves it alone.
            os.utime(final)
            partial.unlink(missing_ok=True)
            return
        final.parent.mkdir(exist_ok=True)
        os.replace(partial, final)
        os.utime(final)
        _fsync_dir(final.parent)
        _fsync_dir(partial.parent)

    async def discard_partial(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        await asyncio.to_thread(self._partial_path(upload_id).unlink, missing_ok=True)

    async def partial_ids(self) -> list[str]:
        names = await asyncio.to_thread(os.listdir, self._partial)
        return [name for name in names if UPLOAD_ID.fullmatch(name)]

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._blob_path(sha256), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    async def read_all(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self._blob_path(sha256).read_bytes)

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self._blob_path(sha256).unlink, missing_ok=True)

    async def local_path(self, sha256: str) -> Path:
        path = self._blob_path(sha256)
        if not await asyncio.to_thread(path.exists):
            raise FileNotFoundError(path)
        return path

    async def prune_local_copies(self) -> int:
        return 0

    async def stale_blobs(self, older_than_s: float) -> list[str]:
        return await asyncio.to_thread(self._stale_blobs, time.time() - older_than_s)

    def _stale_blobs(self, before: float) -> list[str]:
        found = []
        for directory in self._blobs.iterdir():
            for path in directory.iterdir():
                if SHA256.fullmatch(path.name) and path.stat().st_mtime < before:
                    found.append(path.name)
        return found


def _open_at(path: Path, offset: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        # Bytes past the acknowledged offset were never confirmed to the client: drop them.
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(writer: DirectWriter, pieces: list[bytes], hasher: Any = None) -> int:
    """A batch's write, in a worker thread (tests replace it to fail a write)."""
    return writer.write(pieces, hasher)


def _write_last(writer: DirectWriter, pieces: list[bytes], hasher: Any = None) -> int:
    return _write_all(writer, pieces, hasher) + writer.finish()


def _truncate(fd: int, size: int) -> None:
    os.ftruncate(fd, size)
    os.fsync(fd)


def _hash_file(path: Path) -> Sealed:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Sealed(digest.hexdigest(), size)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
