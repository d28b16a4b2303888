"""Processing after upload: a PDF is PROCESSING until its text is extracted, an audio or video file
until it is transcribed, an image until its text is read (once, stored as a blob of its own); then it
turns ACTIVE, or FAILED with the reason. Runs in the background, the heavy parts in worker threads;
resumed after a restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from localgem import errors, names
from localgem.files import documents
from localgem.files.service import Clock
from localgem.perception import Senses
from localgem.storage.blobs import BlobStore
from localgem.storage.files import FileRepository
from localgem.storage.records import FileRecord

logger = logging.getLogger(__name__)

#: Files are processed in memory; larger ones fail processing instead of exhausting it.
_MAX_PROCESSED_BYTES = 256 * 1024 * 1024


class FileProcessing:
    def __init__(
        self,
        files: FileRepository,
        blobs: BlobStore,
        clock: Clock,
        senses: Senses | None = None,
    ) -> None:
        self._files = files
        self._blobs = blobs
        self._clock = clock
        self._senses = senses or Senses()
        self._running: set[asyncio.Task[None]] = set()

    def needed(self, mime_type: str) -> bool:
        return self._senses.modality(mime_type) is not None or documents.base_type(mime_type) == documents.PDF

    def start(self, record: FileRecord) -> None:
        """Process a file just stored as PROCESSING, in the background."""
        task = asyncio.get_running_loop().create_task(self._process(record))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def resume(self) -> None:
        """After a restart: files left PROCESSING are processed again."""
        for record in await self._files.processing():
            self.start(record)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _process(self, record: FileRecord) -> None:
        try:
            text = await self._text(record)
        except (ValueError, errors.ApiError) as exc:
            message = exc.message if isinstance(exc, errors.ApiError) else str(exc)
            await self._files.finish_processing(record, "FAILED", self._clock(), text_sha256=None, error=message)
            return
        except Exception:  # a fault of ours must not leave the file PROCESSING forever
            logger.exception("processing files/%s failed", record.id)
            message = "The file could not be processed (an internal error; the server log has the details)."
            await self._files.finish_processing(record, "FAILED", self._clock(), text_sha256=None, error=message)
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

    async def _text(self, record: FileRecord) -> str:
        if record.size_bytes > _MAX_PROCESSED_BYTES:
            raise ValueError(f"{record.size_bytes} bytes: files are processed up to {_MAX_PROCESSED_BYTES} bytes.")
        data = await self._blobs.read_all(record.sha256)
        if self._senses.modality(record.mime_type) is not None:
            return (await self._senses.perceive(data, record.mime_type, "file", inline=False)).text
        return await asyncio.to_thread(documents.pdf_text, data)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data
