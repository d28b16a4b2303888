"""A batch's results as clients read them: inline in its Operation, or (for a batch read from a JSONL file)
in a results file written once, when the batch ends, and only read afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from localgem.batches import batch_files
from localgem.batches.wire import BatchOutput, InlinedResponse, InlinedResponses
from localgem.files.service import FileService
from localgem.storage.batches import BatchRepository
from localgem.storage.records import BatchItem, BatchRecord
from localgem.types.status import Status

FINAL_STATES = frozenset(
    {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
)


class BatchResults:
    def __init__(self, repository: BatchRepository, files: FileService) -> None:
        self._repo = repository
        self._files = files
        self._writing: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def finalize(self, record: BatchRecord) -> None:
        """Writes the results file of a batch read from a file, unless it has one. Called once no result can
        be recorded any more: by its executor when all are, by a cancel, or for a batch found ended without
        one (expired, or its server stopped in between)."""
        if record.input_file is None or record.responses_file is not None:
            return
        key = (record.project, record.id)
        writing = self._writing.get(key)
        if writing is None:  # one writer per batch in this process (across servers, set_responses_file decides)
            writing = self._writing[key] = asyncio.ensure_future(self._write(record))
            writing.add_done_callback(lambda done: self._written(key, done))
        await asyncio.shield(writing)  # a waiter that goes away (a client hung up) leaves the others theirs

    def _written(self, key: tuple[str, str], done: asyncio.Future[None]) -> None:
        self._writing.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: whoever waited has it; nobody may be left to

    async def _write(self, record: BatchRecord) -> None:
        lines = batch_files.result_lines(self._pages(record))
        file = await self._files.create_generated(
            record.project, f"batches/{record.id} responses", batch_files.MIME_TYPE, lines
        )
        if not await self._repo.set_responses_file(record.project, record.id, file.id):
            await self._files.delete(record.project, file.id)  # another server wrote it first: one file only

    async def output(self, record: BatchRecord, *, inline: bool) -> BatchOutput | None:
        """What an ended batch produced: its results file, or (``inline``) its results themselves."""
        if record.state not in FINAL_STATES:
            return None
        if record.input_file is not None:
            return BatchOutput(responses_file=f"files/{record.responses_file}") if record.responses_file else None
        if not inline:
            return None
        return BatchOutput(inlined_responses=InlinedResponses(inlined_responses=await self._inlined(record)))

    async def _inlined(self, record: BatchRecord) -> list[InlinedResponse]:
        return [_inlined(item) for item in await self._repo.items(record.project, record.id)]

    async def _pages(self, record: BatchRecord) -> AsyncIterator[list[BatchItem]]:
        after = -1
        while page := await self._repo.items(record.project, record.id, after, batch_files.GROUP):
            yield page
            after = page[-1].position


def _inlined(item: BatchItem) -> InlinedResponse:
    response = json.loads(item.response) if item.response is not None else None
    error = json.loads(item.error) if response is None and item.error is not None else None
    return InlinedResponse(
        response=response,
        error=Status.model_validate(error) if error is not None else None,
        metadata=json.loads(item.metadata) if item.metadata is not None else None,
    )
