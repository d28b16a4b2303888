"""Batches (``batches/{id}``) as resources: created from inline requests or a JSONL file, then read, listed,
renamed, cancelled and deleted. Each batch is a google.longrunning.Operation: the operations runner runs it
with the executors of ``batches.executors``, and ``batches.results`` holds what it produced.

Embedding batches (asyncBatchEmbedContent) and generateContent batches (batchGenerateContent) share it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from localgem import errors, names
from localgem.batches import batch_files
from localgem.batches.results import FINAL_STATES, BatchResults
from localgem.batches.wire import (
    AsyncBatchEmbedContentRequest,
    BatchGenerateContentRequest,
    BatchOperation,
    BatchResource,
    BatchStats,
    EmbedContentBatch,
    GenerateContentBatch,
)
from localgem.embeddings.wire import EmbedContentRequest
from localgem.files.service import FileService
from localgem.generation.service import TunedModels
from localgem.models.registry import ModelRegistry
from localgem.operations.model import ListOperationsResponse
from localgem.operations.runner import Runner
from localgem.operations.webhooks import WebhookService
from localgem.storage.batches import BatchRepository
from localgem.storage.records import BatchItem, BatchRecord
from localgem.types.field_mask import update_paths
from localgem.types.generation import GenerateContentRequest
from localgem.types.paging import paginate
from localgem.types.wire import rfc3339

log = logging.getLogger(__name__)

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
_KINDS = {"generate": "GenerateContentBatch", "embed": "EmbedContentBatch"}
_REQUEST_TYPES = {"generate": GenerateContentRequest, "embed": EmbedContentRequest}
#: Ended batches settled (results file, webhooks) per round of ``settle``.
SETTLE_GROUP = 100
Clock = Callable[[], datetime]


class BatchService:
    def __init__(
        self,
        repository: BatchRepository,
        registry: ModelRegistry,
        files: FileService,
        results: BatchResults,
        runner: Runner,
        clock: Clock,
        *,
        webhooks: WebhookService | None = None,
        tuned: TunedModels | None = None,
    ) -> None:
        self._tuned = tuned
        self._repo = repository
        self._registry = registry
        self._files = files
        self._results = results
        self._runner = runner
        self._clock = clock
        self._webhooks = webhooks

    async def create_embed_batch(
        self, model: str, body: AsyncBatchEmbedContentRequest, *, project: str
    ) -> BatchOperation:
        self._registry.resolve(model, "asyncBatchEmbedContent")  # unknown models and wrong methods: 4xx now
        return await self._create("embed", model, body.batch, project)

    async def create_generate_batch(
        self, model: str, body: BatchGenerateContentRequest, *, project: str
    ) -> BatchOperation:
        if model.startswith("tunedModels/"):
            if self._tuned is None:
                raise errors.NotFound(f"{model} is not found: this server serves no tuned models.")
            await self._tuned.target(project, model, "generateContent")
        else:
            self._registry.resolve(model, "generateContent")
        return await self._create("generate", model, body.batch, project)

    async def _create(
        self, kind: str, model: str, batch: EmbedContentBatch | GenerateContentBatch | None, project: str
    ) -> BatchOperation:
        if batch is None:
            raise errors.invalid_field("batch", "batch is required.")
        if batch.model and _full_name(batch.model) != _full_name(model):
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
            model=_full_name(model),
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
        self._runner.added()
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

    # The operations of the ``batches`` collection (see operations.service).

    async def get(self, project: str, name: str) -> BatchOperation:
        return await self._operation(await self._record(project, name))

    async def list(
        self, project: str, parent: str, page_size: int | None, page_token: str | None
    ) -> ListOperationsResponse:
        """Newest first; results files are named, inline results are left to ``get``."""
        records = await self._repo.all(project)
        page, token = paginate(records, page_size, page_token, default_size=50, max_size=1000)
        operations = [await self._operation(r, inline=False) for r in page]
        return ListOperationsResponse(operations=operations, next_page_token=token)

    async def cancel(self, project: str, name: str) -> None:
        record = await self._record(project, name)
        if await self._runner.cancel(record.kind, project, record.id):
            ended = await self._repo.get(project, record.id)
            if ended is not None:
                await self._results.finalize(ended)  # the client that cancelled reads the batch's results next
        elif record.state not in FINAL_STATES:
            raise errors.Aborted(f"batches/{record.id} changed while it was being cancelled; try again.")

    async def delete(self, project: str, name: str) -> None:
        record = await self._record(project, name)
        # Stopped like a cancel (a runner still holding it stops writing), but it goes: no results file is written.
        await self._repo.cancel(project, record.id, self._clock())
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
    ) -> BatchResource:
        """updateGenerateContentBatch / updateEmbedContentBatch: display name and priority only."""
        record = await self._record(project, name)
        if record.kind != kind:
            raise errors.InvalidArgument(f"batches/{record.id} is not a {_KINDS[kind]}.")
        paths = update_paths(
            update_mask, body, ("display_name", "priority"), "Only displayName and priority of a batch can be updated."
        )
        changes = {f: getattr(body, f) if f == "display_name" else getattr(body, f) or 0 for f in paths}
        await self._repo.rename(project, record.id, changes, self._clock())
        operation = await self._operation(await self._record(project, name))
        assert operation.metadata is not None
        return operation.metadata.model_copy(update={"type_": None})

    async def _record(self, project: str, name: str) -> BatchRecord:
        batch_id = names.lookup_id(name, "batches", _not_found)
        record = await self._repo.get(project, batch_id)
        if record is None:
            raise _not_found(batch_id)
        return record

    async def _operation(self, record: BatchRecord, *, inline: bool = True) -> BatchOperation:
        """The batch as Google returns it: a google.longrunning.Operation around the batch resource."""
        kind = "EmbedContentBatch" if record.kind == "embed" else "GenerateContentBatch"
        counts = await self._repo.counts(record.project, record.id)
        output = await self._results.output(record, inline=inline)
        name = f"batches/{record.id}"
        resource = BatchResource(
            type_=TYPE_PREFIX + kind,
            name=name,
            model=record.model,
            display_name=record.display_name or "",
            state=record.state,
            create_time=rfc3339(record.create_time),
            update_time=rfc3339(record.update_time),
            batch_stats=BatchStats(
                request_count=record.request_count,
                successful_request_count=counts.successful,
                failed_request_count=counts.failed,
                pending_request_count=counts.pending,
            ),
            priority=record.priority or None,
            end_time=rfc3339(record.end_time) if record.end_time is not None else None,
            output=output,
        )
        response = output.model_copy(update={"type_": f"{TYPE_PREFIX}{kind}Output"}) if output is not None else None
        return BatchOperation(name=name, metadata=resource, done=record.state in FINAL_STATES, response=response)

    # Ended batches.

    async def settle(self) -> float | None:
        """A ``Worker`` step, woken when a batch ends: file batches that ended without their results file get
        it, then ended batches' webhooks are queued (a file batch's after its file, which its event names)."""
        unwritten = await self._repo.unwritten_results(SETTLE_GROUP)
        for record in unwritten:
            try:
                await self._results.finalize(record)
            except Exception:  # retried next round; the other batches' results and webhooks go on
                log.exception("writing the results file of batches/%s failed", record.id)
        awaiting = await self._repo.awaiting_webhooks(SETTLE_GROUP) if self._webhooks is not None else []
        for record in awaiting:
            await self._queue_webhooks(record)
        return 0.0 if len(awaiting) == SETTLE_GROUP else None  # more wait (a failing file write waits a poll)

    async def _queue_webhooks(self, record: BatchRecord) -> bool:
        assert self._webhooks is not None
        return await self._webhooks.queue(record, await self._operation(record, inline=False))


def _not_found(batch_id: str) -> errors.NotFound:
    return errors.NotFound(f"Batch batches/{batch_id} not found.")


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


def _full_name(model: str) -> str:
    """``models/x`` for a model named ``x`` or ``models/x``; a tuned model's name as it is."""
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
