"""Batches as durable long-running operations (``batches/{id}``): created, stored, run in the
background by whichever server holds the batch's lease, each result recorded exactly once.

Embedding batches (asyncBatchEmbedContent) run here; generateContent batches will share the machinery.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from localgem import errors, names
from localgem.catalog.registry import ModelRegistry
from localgem.services.embeddings import EmbeddingService
from localgem.storage.batches import BatchRepository
from localgem.storage.records import BatchItem, BatchRecord
from localgem.types.batches import AsyncBatchEmbedContentRequest
from localgem.types.embeddings import ContentEmbedding, EmbedContentRequest, EmbedContentResponse
from localgem.types.wire import parse_message, rfc3339

log = logging.getLogger(__name__)

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
FINAL_STATES = frozenset(
    {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
)
Clock = Callable[[], datetime]


class BatchService:
    def __init__(
        self,
        repository: BatchRepository,
        registry: ModelRegistry,
        embeddings: EmbeddingService,
        clock: Clock,
        *,
        lease: timedelta = timedelta(seconds=30),
        chunk: int = 64,
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._embeddings = embeddings
        self._clock = clock
        self._lease = lease
        self._chunk = chunk
        self.owner = names.new_id(16)  # this process, as the holder of batch leases
        self._wake = asyncio.Event()

    async def create_embed_batch(self, model: str, body: AsyncBatchEmbedContentRequest, *, project: str) -> dict:
        self._registry.resolve(model, "asyncBatchEmbedContent")  # unknown models and wrong methods: 4xx now
        batch = body.batch
        if batch is None:
            raise errors.invalid_field("batch", "* AsyncBatchEmbedContentRequest.batch: batch is required")
        if batch.model and batch.model.removeprefix("models/") != model.removeprefix("models/"):
            raise errors.invalid_field(
                "batch.model", f"batch.model ({batch.model}) does not match the model in the URL."
            )
        config = batch.input_config
        if config is None or (config.file_name is None and config.requests is None):
            raise errors.invalid_field("batch.input_config", "batch.input_config needs requests or a fileName.")
        if config.file_name is not None:
            raise errors.not_supported("batch.input_config.file_name", "File input for embedding batches")
        inlined = (config.requests and config.requests.requests) or []
        if not inlined:
            raise errors.invalid_field("batch.input_config.requests.requests", "The batch has no requests.")
        items = []
        for i, item in enumerate(inlined):
            if item.request is None:
                where = f"batch.input_config.requests.requests[{i}].request"
                raise errors.invalid_field(where, f"{where} is required.")
            items.append(
                BatchItem(
                    position=i,
                    request=json.dumps(item.request.to_wire()),
                    metadata=json.dumps(item.metadata) if item.metadata is not None else None,
                )
            )
        now = self._clock()
        record = BatchRecord(
            project=project,
            id=names.new_id(),
            kind="embed",
            model=f"models/{model.removeprefix('models/')}",
            display_name=batch.display_name,
            state="BATCH_STATE_PENDING",
            priority=batch.priority or 0,
            request_count=len(items),
            create_time=now,
            update_time=now,
        )
        await self._repo.add(record, items)
        self._wake.set()
        return await self._operation(record)

    async def get(self, project: str, name: str) -> dict:
        batch_id = names.lookup_id(name, "batches")
        record = await self._repo.get(project, batch_id)
        if record is None:
            raise errors.NotFound(f"Batch batches/{batch_id} not found.")
        return await self._operation(record)

    async def _operation(self, record: BatchRecord) -> dict[str, Any]:
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
        if operation["done"]:
            output = {"inlinedResponses": {"inlinedResponses": await self._inlined(record)}}
            metadata["output"] = output
            operation["response"] = {"@type": TYPE_PREFIX + kind + "Output", **output}
        return operation

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
        while True:
            pending = await self._repo.pending(record.project, record.id, self._chunk)
            if not pending:
                break
            results = await self._run_chunk(record, pending)
            now = self._clock()
            if not await self._repo.record(self.owner, record, results, now, now + self._lease):
                log.warning("lost the lease of batches/%s; another server goes on with it", record.id)
                return True
        await self._repo.finish(self.owner, record, "BATCH_STATE_SUCCEEDED", self._clock())
        return True

    async def _run_chunk(self, record: BatchRecord, items: list[BatchItem]) -> list[BatchItem]:
        try:
            entry = self._registry.resolve(record.model, "asyncBatchEmbedContent")
        except errors.ApiError as exc:
            return [_failed(item, exc) for item in items]
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
                done.append(_failed(item, result))
            else:
                response = EmbedContentResponse(embedding=ContentEmbedding(values=result.vector))
                done.append(BatchItem(item.position, item.request, item.metadata, response.to_json().decode()))
        return done


def _failed(item: BatchItem, exc: errors.ApiError) -> BatchItem:
    return BatchItem(item.position, item.request, item.metadata, error=json.dumps(exc.to_status()))
