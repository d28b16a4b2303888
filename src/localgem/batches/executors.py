"""The executors of batch operations, registered with the operations runner under their kinds: ``generate``
(batchGenerateContent: each request as generateContent runs it) and ``embed`` (asyncBatchEmbedContent).

Both keep a window of request groups running, record results as they come and renew the batch's lease as
they record; requests the engine hands back (it was full) run again in a later pass.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable

from localgem import errors
from localgem.batches.batch_files import failed
from localgem.batches.results import BatchResults
from localgem.embeddings.service import EmbeddingService
from localgem.embeddings.wire import ContentEmbedding, EmbedContentRequest, EmbedContentResponse
from localgem.generation.service import GenerationService
from localgem.models.registry import ModelRegistry
from localgem.operations.runner import Lease
from localgem.storage.batches import BatchRepository
from localgem.storage.records import BatchItem, BatchRecord
from localgem.types.generation import GenerateContentRequest
from localgem.types.responses import GenerateContentResponse
from localgem.types.wire import parse_message

SUCCEEDED = "BATCH_STATE_SUCCEEDED"
#: Runs some requests of a batch; returns those it finished (the rest stay pending).
RunGroup = Callable[[BatchRecord, list[BatchItem]], Awaitable[list[BatchItem]]]


async def generate(
    generation: GenerationService, record: BatchRecord, request: GenerateContentRequest
) -> GenerateContentResponse:
    """One batch request, as generateContent runs it (cached content included), behind online requests."""
    plan = await generation.plan(record.model, request, project=record.project, background=True)
    return await generation.generate(plan)


class _BatchExecutor:
    #: Requests per group, and groups running together.
    size: int
    window: int

    def __init__(self, repository: BatchRepository, results: BatchResults) -> None:
        self._repo = repository
        self._results = results

    async def run(self, record: BatchRecord, lease: Lease) -> str | None:
        if not await run_window(self._repo, record, lease, self.run_group, self.size, self.window):
            return None
        await self._results.finalize(record)  # before SUCCEEDED, so a client seeing it finds the file
        return SUCCEEDED

    async def run_group(self, record: BatchRecord, items: list[BatchItem]) -> list[BatchItem]:
        raise NotImplementedError


class GenerateExecutor(_BatchExecutor):
    size = 1

    def __init__(
        self, repository: BatchRepository, results: BatchResults, generation: GenerationService, *, parallel: int = 8
    ) -> None:
        super().__init__(repository, results)
        self._generation = generation
        self.window = parallel  # generation requests of a batch in flight together (running or queued)

    async def run_group(self, record: BatchRecord, items: list[BatchItem]) -> list[BatchItem]:
        results = await asyncio.gather(*(self._one(record, item) for item in items))
        return [r for r in results if r is not None]

    async def _one(self, record: BatchRecord, item: BatchItem) -> BatchItem | None:
        """None: the engine is full, try it again later."""
        try:
            request = parse_message(GenerateContentRequest, json.loads(item.request))
            response = await generate(self._generation, record, request)
        except errors.Unavailable:
            return None
        except errors.ApiError as exc:
            return failed(item, exc)
        # turnToken belongs to a conversation's turn; google-genai's response model (which users
        # validate results files with) has no field for it.
        response.turn_token = None
        return BatchItem(item.position, item.request, item.metadata, response.to_json().decode())


class EmbedExecutor(_BatchExecutor):
    window = 2  # an embedding call takes many texts; two in flight keep the model busy

    def __init__(
        self,
        repository: BatchRepository,
        results: BatchResults,
        registry: ModelRegistry,
        embeddings: EmbeddingService,
        *,
        chunk: int = 64,
    ) -> None:
        super().__init__(repository, results)
        self._registry = registry
        self._embeddings = embeddings
        self.size = chunk

    async def run_group(self, record: BatchRecord, items: list[BatchItem]) -> list[BatchItem]:
        try:
            entry = self._registry.resolve(record.model, "asyncBatchEmbedContent")
        except errors.ApiError as exc:
            return [failed(item, exc) for item in items]
        requests: list[EmbedContentRequest | errors.ApiError] = []
        for item in items:
            try:
                requests.append(parse_message(EmbedContentRequest, json.loads(item.request)))
            except errors.ApiError as exc:
                requests.append(exc)
        results = await self._embeddings.embed_each(entry, requests, project=record.project)
        done = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, errors.ApiError):
                done.append(failed(item, result))
            else:
                response = EmbedContentResponse(embedding=ContentEmbedding(values=result.vector))
                done.append(BatchItem(item.position, item.request, item.metadata, response.to_json().decode()))
        return done


async def run_window(
    repository: BatchRepository, record: BatchRecord, lease: Lease, run: RunGroup, size: int, window: int
) -> bool:
    """Keeps ``window`` groups of ``size`` pending requests running, records results as they come and
    renews the lease at least every second; False if the lease was lost meanwhile (the batch was
    cancelled, deleted, expired or taken over: its requests in flight are then stopped at once).

    Requests a group hands back unfinished (the engine was full) are taken again by another pass.
    """
    running: dict[asyncio.Future[list[BatchItem]], int] = {}
    ahead: deque[BatchItem] = deque()  # pending requests read, not started yet
    after, again, exhausted = -1, False, False
    finished: list[BatchItem] = []
    written = time.monotonic()
    try:
        while True:
            while len(running) < window:
                if len(ahead) < size and not exhausted:
                    page = await repository.pending(record.project, record.id, max(window * size, 64), after)
                    exhausted = not page
                    after = page[-1].position if page else after
                    ahead.extend(page)
                if not ahead:
                    break
                group = [ahead.popleft() for _ in range(min(size, len(ahead)))]
                running[asyncio.ensure_future(run(record, group))] = len(group)
            if not running:  # all taken: those handed back unfinished get another pass
                if not await lease.renew(finished):
                    return False
                if not again:
                    return True
                finished, after, again, exhausted = [], -1, False, False
                await asyncio.sleep(0.5)
                continue
            done, _ = await asyncio.wait(running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results = task.result()
                again |= len(results) < running.pop(task)
                finished += results
            # Results are written together (each write is a commit), at least once a second to renew the lease.
            since = time.monotonic() - written
            if since >= 1.0 or (finished and since >= 0.5):
                if not await lease.renew(finished):
                    return False
                finished, written = [], time.monotonic()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
