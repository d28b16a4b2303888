"""Batches as durable long-running operations (``batches/{id}``): created, stored, run in the
background by whichever server holds the batch's lease, each result recorded exactly once.

Embedding batches (asyncBatchEmbedContent) and generateContent batches (batchGenerateContent) share it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from localgem import errors, names
from localgem.batches import batch_files
from localgem.batches.batch_files import failed
from localgem.batches.wire import (
    AsyncBatchEmbedContentRequest,
    BatchGenerateContentRequest,
    EmbedContentBatch,
    GenerateContentBatch,
)
from localgem.caching.service import CacheService
from localgem.embeddings.service import EmbeddingService
from localgem.embeddings.wire import ContentEmbedding, EmbedContentRequest, EmbedContentResponse
from localgem.files.service import FileService
from localgem.generation.service import GenerationService
from localgem.models.registry import ModelRegistry
from localgem.operations.webhooks import WebhookService
from localgem.storage.batches import BatchRepository
from localgem.storage.records import BatchItem, BatchRecord
from localgem.types.field_mask import update_paths
from localgem.types.generation import GenerateContentRequest
from localgem.types.paging import paginate
from localgem.types.wire import parse_message, rfc3339

log = logging.getLogger(__name__)

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
_KINDS = {"generate": "GenerateContentBatch", "embed": "EmbedContentBatch"}
_REQUEST_TYPES = {"generate": GenerateContentRequest, "embed": EmbedContentRequest}
FINAL_STATES = frozenset(
    {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
)
Clock = Callable[[], datetime]
#: Runs some requests of a batch; returns those it finished (the rest stay pending).
RunGroup = Callable[[BatchRecord, list[BatchItem]], Awaitable[list[BatchItem]]]


class BatchService:
    def __init__(
        self,
        repository: BatchRepository,
        registry: ModelRegistry,
        embeddings: EmbeddingService,
        clock: Clock,
        *,
        generation: GenerationService,
        caches: CacheService,
        files: FileService,
        lease: timedelta = timedelta(seconds=30),
        deadline: timedelta = timedelta(hours=48),
        chunk: int = 64,
        parallel: int = 8,
        webhooks: WebhookService | None = None,
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._embeddings = embeddings
        self._generation = generation
        self._caches = caches
        self._files = files
        self._deadline = deadline
        self._parallel = parallel  # generation requests of a batch in flight together (running or queued)
        self._clock = clock
        self._lease = lease
        self._chunk = chunk
        self.owner = names.new_id(16)  # this process, as the holder of batch leases
        self._wake = asyncio.Event()
        self._webhooks = webhooks

    async def create_embed_batch(self, model: str, body: AsyncBatchEmbedContentRequest, *, project: str) -> dict:
        self._registry.resolve(model, "asyncBatchEmbedContent")  # unknown models and wrong methods: 4xx now
        return await self._create("embed", model, body.batch, project)

    async def create_generate_batch(self, model: str, body: BatchGenerateContentRequest, *, project: str) -> dict:
        self._registry.resolve(model, "generateContent")
        return await self._create("generate", model, body.batch, project)

    async def _create(
        self, kind: str, model: str, batch: EmbedContentBatch | GenerateContentBatch | None, project: str
    ) -> dict:
        if batch is None:
            raise errors.invalid_field("batch", "batch is required.")
        if batch.model and batch.model.removeprefix("models/") != model.removeprefix("models/"):
            raise errors.invalid_field(
                "batch.model", f"batch.model ({batch.model}) does not match the model in the URL."
            )
        config = batch.input_config
        if config is None or (config.file_name is None and config.requests is None):
            raise errors.invalid_field("batch.input_config", "batch.input_config needs requests or a fileName.")
        webhook_config = self._webhook_config(batch)
        input_file = None
        if config.file_name is not None:
            if config.requests is not None:
                raise errors.invalid_field(
                    "batch.input_config", "Give batch.input_config requests or a fileName, not both."
                )
            input_file, items = await self._file_requests(kind, project, config.file_name)
        else:
            items = _inline_requests(config.requests.requests or [])
        now = self._clock()
        record = BatchRecord(
            project=project,
            id=names.new_id(),
            kind=kind,
            model=f"models/{model.removeprefix('models/')}",
            display_name=batch.display_name,
            state="BATCH_STATE_PENDING",
            priority=batch.priority or 0,
            request_count=0,
            create_time=now,
            update_time=now,
            input_file=input_file,
            webhook_config=webhook_config,
            webhook_state="PENDING" if webhook_config is not None else None,
        )
        if webhook_config is not None and self._webhooks is not None:
            await self._webhooks.signing_secret(project)  # exists before anything is signed with it
        record = await self._repo.add(record, items)
        self._wake.set()
        return await self._operation(record)

    async def _file_requests(
        self, kind: str, project: str, file_name: str
    ) -> tuple[str, AsyncIterator[list[BatchItem]]]:
        """The requests of a JSONL file of this project's, read as they are stored."""
        file, chunks = await self._files.content(project, file_name)
        if file.state != "ACTIVE":
            raise errors.FailedPrecondition(f"The File {file.id} is not in an ACTIVE state and usage is not allowed.")
        if file.size_bytes > batch_files.MAX_INPUT_BYTES:
            raise errors.invalid_field(
                "batch.input_config.file_name",
                f"files/{file.id} is {file.size_bytes} bytes; a batch's input file may be at most "
                f"{batch_files.MAX_INPUT_BYTES} bytes (2 GB).",
            )
        return file.id, batch_files.request_items(chunks, _REQUEST_TYPES[kind], f"files/{file.id}")

    def _webhook_config(self, batch: EmbedContentBatch | GenerateContentBatch) -> str | None:
        if batch.webhook_config is None:
            return None
        if self._webhooks is None:
            raise errors.not_supported("batch.webhook_config", "Webhooks")
        return self._webhooks.stored_config(batch.webhook_config, "batch.webhook_config")

    async def queue_webhooks(self) -> int:
        """Queues the webhook deliveries of batches that reached a final state; how many batches."""
        if self._webhooks is None:
            return 0
        queued = 0
        for record in await self._repo.awaiting_webhooks(100):
            queued += await self._queue_webhooks(record)
        return queued

    async def _queue_webhooks(self, record: BatchRecord) -> bool:
        assert self._webhooks is not None
        return await self._webhooks.queue(record, await self._operation(record, with_output=False))

    def _finished(self) -> None:
        """A batch reached a final state: its webhooks (if any) are queued and sent without waiting for a poll."""
        if self._webhooks is not None:
            self._webhooks.wake()

    async def list(self, project: str, page_size: int | None, page_token: str | None) -> dict:
        records = await self._repo.all(project)
        page, token = paginate(records, page_size, page_token, default_size=50, max_size=1000)
        listed: dict[str, Any] = {"operations": [await self._operation(r, with_output=False) for r in page]}
        if token:
            listed["nextPageToken"] = token
        return listed

    async def cancel(self, project: str, name: str) -> None:
        record = await self._record(project, name)
        if await self._repo.cancel(project, record.id, self._clock()):
            self._finished()
        elif record.state not in FINAL_STATES:
            raise errors.Aborted(f"batches/{record.id} changed while it was being cancelled; try again.")

    async def delete(self, project: str, name: str) -> None:
        record = await self._record(project, name)
        await self._repo.cancel(project, record.id, self._clock())  # a runner still holding it stops writing
        if record.webhook_state == "PENDING" and self._webhooks is not None:
            # Its final state is reported even though the batch goes: the delivery keeps its own copy.
            final = await self._repo.get(project, record.id)
            if final is not None and final.state in FINAL_STATES:
                await self._queue_webhooks(final)
        await self._repo.remove(project, record.id)

    async def update(
        self,
        project: str,
        name: str,
        kind: str,
        body: EmbedContentBatch | GenerateContentBatch,
        update_mask: str | None,
    ) -> dict:
        """updateGenerateContentBatch / updateEmbedContentBatch: display name and priority only."""
        record = await self._record(project, name)
        if record.kind != kind:
            raise errors.InvalidArgument(f"batches/{record.id} is not a {_KINDS[kind]}.")
        paths = update_paths(
            update_mask, body, ("display_name", "priority"), "Only displayName and priority of a batch can be updated."
        )
        changes = {f: getattr(body, f) if f == "display_name" else getattr(body, f) or 0 for f in paths}
        await self._repo.rename(project, record.id, changes, self._clock())
        resource = (await self._operation(await self._record(project, name)))["metadata"]
        resource.pop("@type")
        return resource

    async def _record(self, project: str, name: str) -> BatchRecord:
        batch_id = names.lookup_id(name, "batches")
        record = await self._repo.get(project, batch_id)
        if record is None:
            raise errors.NotFound(f"Batch batches/{batch_id} not found.")
        return record

    async def get(self, project: str, name: str) -> dict:
        return await self._operation(await self._record(project, name))

    async def _operation(self, record: BatchRecord, with_output: bool = True) -> dict[str, Any]:
        """The batch as Google returns it: a google.longrunning.Operation around the batch resource."""
        kind = "EmbedContentBatch" if record.kind == "embed" else "GenerateContentBatch"
        counts = await self._repo.counts(record.project, record.id)
        name = f"batches/{record.id}"
        metadata: dict[str, Any] = {
            "@type": TYPE_PREFIX + kind,
            "name": name,
            "model": record.model,
            "displayName": record.display_name or "",
            "state": record.state,
            "createTime": rfc3339(record.create_time),
            "updateTime": rfc3339(record.update_time),
            "batchStats": {
                "requestCount": str(record.request_count),
                "successfulRequestCount": str(counts.successful),
                "failedRequestCount": str(counts.failed),
                "pendingRequestCount": str(counts.pending),
            },
        }
        if record.priority:
            metadata["priority"] = str(record.priority)
        operation: dict[str, Any] = {"name": name, "metadata": metadata, "done": record.state in FINAL_STATES}
        if record.end_time is not None:
            metadata["endTime"] = rfc3339(record.end_time)
        output: dict[str, Any] | None = None
        if operation["done"] and record.input_file is not None and (with_output or record.responses_file):
            output = {"responsesFile": f"files/{record.responses_file or await self._write_responses(record)}"}
        elif operation["done"] and with_output:
            output = {"inlinedResponses": {"inlinedResponses": await self._inlined(record)}}
        if output is not None:
            metadata["output"] = output
            operation["response"] = {"@type": TYPE_PREFIX + kind + "Output", **output}
        return operation

    async def _write_responses(self, record: BatchRecord) -> str:
        """The results file of a batch read from a file, written once (by whoever gets there first)."""
        lines = batch_files.result_lines(self._pages(record))
        file = await self._files.create_generated(
            record.project, f"batches/{record.id} responses", batch_files.MIME_TYPE, lines
        )
        if await self._repo.set_responses_file(record.project, record.id, file.id):
            return file.id
        await self._files.delete(record.project, file.id)
        latest = await self._repo.get(record.project, record.id)
        if latest is None or latest.responses_file is None:
            raise errors.NotFound(f"Batch batches/{record.id} not found.")
        return latest.responses_file

    async def _pages(self, record: BatchRecord) -> AsyncIterator[list[BatchItem]]:
        after = -1
        while page := await self._repo.items(record.project, record.id, after, batch_files.GROUP):
            yield page
            after = page[-1].position

    async def _inlined(self, record: BatchRecord) -> list[dict[str, Any]]:
        results = []
        for item in await self._repo.items(record.project, record.id):
            result: dict[str, Any] = {}
            if item.response is not None:
                result["response"] = json.loads(item.response)
            elif item.error is not None:
                result["error"] = json.loads(item.error)
            if item.metadata is not None:
                result["metadata"] = json.loads(item.metadata)
            results.append(result)
        return results

    # Running batches.

    async def run_forever(self, poll_interval: float) -> None:
        """Claim and run batches until cancelled; new ones wake it, others' lapsed leases are polled for."""
        while True:
            try:
                now = self._clock()
                if await self._repo.expire(now - self._deadline, now):
                    self._finished()
                ran = await self.run_once()
            except Exception:  # a failure leaves the lease to lapse; the batch is retried then
                log.exception("running a batch failed")
                ran = False
            if not ran:
                try:
                    await asyncio.wait_for(self._wake.wait(), poll_interval)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def run_once(self) -> bool:
        now = self._clock()
        record = await self._repo.claim(self.owner, now, now + self._lease)
        if record is None:
            return False
        if record.kind == "embed":  # an embedding call takes many texts; two in flight keep the model busy
            finished = await self._run_window(record, self._embed_chunk, self._chunk, 2)
        else:
            finished = await self._run_window(record, self._generate_chunk, 1, self._parallel)
        if not finished:
            log.info("batches/%s was cancelled, deleted or taken over; leaving it", record.id)
            return True
        if record.input_file is not None and record.responses_file is None:
            await self._write_responses(record)  # before SUCCEEDED, so a client seeing it finds the file
        if await self._repo.finish(self.owner, record, "BATCH_STATE_SUCCEEDED", self._clock()):
            self._finished()
        return True

    async def _run_window(self, record: BatchRecord, run: RunGroup, size: int, window: int) -> bool:
        """Keeps ``window`` groups of ``size`` pending requests running, records results as they come
        and renews the lease at least every second; False if the batch was cancelled, deleted or taken
        over meanwhile (its requests in flight are then stopped at once).

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
                        page = await self._repo.pending(record.project, record.id, max(window * size, 64), after)
                        exhausted = not page
                        after = page[-1].position if page else after
                        ahead.extend(page)
                    if not ahead:
                        break
                    group = [ahead.popleft() for _ in range(min(size, len(ahead)))]
                    running[asyncio.ensure_future(run(record, group))] = len(group)
                if not running:  # all taken: those handed back unfinished get another pass
                    if not await self._write(record, finished):
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
                    if not await self._write(record, finished):
                        return False
                    finished, written = [], time.monotonic()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _write(self, record: BatchRecord, finished: list[BatchItem]) -> bool:
        """Records finished requests and renews the lease; False if the lease was lost."""
        now = self._clock()
        return await self._repo.record(self.owner, record, finished, now, now + self._lease)

    async def _generate_chunk(self, record: BatchRecord, items: list[BatchItem]) -> list[BatchItem]:
        results = await asyncio.gather(*(self._generate_one(record, item) for item in items))
        return [r for r in results if r is not None]

    async def _generate_one(self, record: BatchRecord, item: BatchItem) -> BatchItem | None:
        """One request, as generateContent would run it; None: the engine is full, try it again later."""
        try:
            request = parse_message(GenerateContentRequest, json.loads(item.request))
            cache = None
            if request.cached_content:
                cache = await self._caches.apply(record.project, record.model, request)
            prepared = await self._generation.prepare(
                record.model, request, project=record.project, cache=cache, background=True
            )
            response = await self._generation.generate(prepared)
        except errors.Unavailable:
            return None
        except errors.ApiError as exc:
            return failed(item, exc)
        # turnToken belongs to a conversation's turn; google-genai's response model (which users
        # validate results files with) has no field for it.
        response.turn_token = None
        return BatchItem(item.position, item.request, item.metadata, response.to_json().decode())

    async def _embed_chunk(self, record: BatchRecord, items: list[BatchItem]) -> list[BatchItem]:
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


async def _inline_requests(inlined: list) -> AsyncIterator[list[BatchItem]]:
    if not inlined:
        raise errors.invalid_field("batch.input_config.requests.requests", "The batch has no requests.")
    items = []
    for i, item in enumerate(inlined):
        if item.request is None:
            where = f"batch.input_config.requests.requests[{i}].request"
            raise errors.invalid_field(where, f"{where} is required.")
        metadata = json.dumps(item.metadata) if item.metadata is not None else None
        items.append(BatchItem(position=i, request=json.dumps(item.request.to_wire()), metadata=metadata))
    yield items
