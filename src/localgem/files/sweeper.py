"""Expiry and blob cleanup: files past their 48 hours (and bytes no file uses any more), expired upload
sessions, stray blobs a crash left without a record, and local copies of blobs gone from the store."""

from __future__ import annotations

from dataclasses import dataclass

from localgem.files.service import Clock
from localgem.files.uploads import UploadSessions
from localgem.storage.blobs import BlobStore
from localgem.storage.files import FileRepository

#: Blobs nobody references are removed only once this old, so a just-stored blob awaiting its record stays.
_ORPHAN_GRACE_S = 3600.0
_SWEEP_BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    files: int = 0
    uploads: int = 0
    blobs: int = 0
    local_copies: int = 0


class FileSweeper:
    def __init__(self, files: FileRepository, blobs: BlobStore, sessions: UploadSessions, clock: Clock) -> None:
        self._files = files
        self._blobs = blobs
        self._sessions = sessions
        self._clock = clock

    async def sweep(self) -> SweepReport:
        """Deletes expired files (and bytes no file uses), expired upload sessions, and stray bytes."""
        now = self._clock()
        removed_files = 0
        for record in await self._files.expired(now, _SWEEP_BATCH):
            if await self._files.remove(record.project, record.id, self._blobs.delete) is not None:
                removed_files += 1
        expired_uploads = await self._sessions.sweep(now, _SWEEP_BATCH)
        stray = 0
        for sha in await self._blobs.stale_blobs(_ORPHAN_GRACE_S):
            if not await self._files.blob_known(sha):
                await self._blobs.delete(sha)
                stray += 1
        # Each replica sweeps: its own copies of blobs another replica deleted go too.
        return SweepReport(removed_files, expired_uploads, stray, await self._blobs.prune_local_copies())
