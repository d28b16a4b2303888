"""Batches on the wire: EmbedContentBatch and GenerateContentBatch as clients send them (one shape over two
request types), and as the server returns them (``BatchResource``, the metadata of the batch's Operation)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import Field

from localgem.embeddings.wire import EmbedContentRequest
from localgem.operations.model import Operation
from localgem.types.generation import GenerateContentRequest
from localgem.types.status import Status
from localgem.types.wire import Int64, WireModel

R = TypeVar("R", EmbedContentRequest, GenerateContentRequest)


class InlinedRequest(WireModel, Generic[R]):
    request: R | None = None
    metadata: dict[str, Any] | None = None


class InlinedRequests(WireModel, Generic[R]):
    requests: list[InlinedRequest[R]] | None = None


class InputConfig(WireModel, Generic[R]):
    file_name: str | None = None
    requests: InlinedRequests[R] | None = None


class WebhookConfig(WireModel):
    """Where to POST the batch's final state (Google's dynamic webhooks), and what to echo back there."""

    uris: list[str] | None = None
    user_metadata: dict[str, Any] | None = None


class Batch(WireModel, Generic[R]):
    model: str | None = None
    display_name: str | None = None
    input_config: InputConfig[R] | None = None
    priority: Int64 | None = None
    webhook_config: WebhookConfig | None = None
    # Output only: accepted (a client may send back what it read) and ignored.
    name: Any = None
    state: Any = None
    output: Any = None
    batch_stats: Any = None
    create_time: Any = None
    update_time: Any = None
    end_time: Any = None


EmbedContentBatch = Batch[EmbedContentRequest]
GenerateContentBatch = Batch[GenerateContentRequest]


class AsyncBatchEmbedContentRequest(WireModel):
    batch: EmbedContentBatch | None = None


class BatchGenerateContentRequest(WireModel):
    batch: GenerateContentBatch | None = None


# As returned.


class BatchStats(WireModel):
    request_count: Int64
    successful_request_count: Int64
    failed_request_count: Int64
    pending_request_count: Int64


class InlinedResponse(WireModel):
    """One request's result, in input order: its response or error, and the metadata it was sent with."""

    response: dict[str, Any] | None = None  # GenerateContentResponse or EmbedContentResponse, as recorded
    error: Status | None = None
    metadata: dict[str, Any] | None = None


class InlinedResponses(WireModel):
    inlined_responses: list[InlinedResponse]


class BatchOutput(WireModel):
    """GenerateContentBatchOutput / EmbedContentBatchOutput: results inline, or the file that holds them."""

    type_: str | None = Field(None, alias="@type")  # only as the Operation's response
    responses_file: str | None = None
    inlined_responses: InlinedResponses | None = None


class BatchResource(WireModel):
    """The GenerateContentBatch / EmbedContentBatch resource (``@type`` when it is an Operation's metadata)."""

    type_: str | None = Field(None, alias="@type")
    name: str
    model: str
    display_name: str
    state: str
    create_time: str
    update_time: str
    batch_stats: BatchStats
    priority: Int64 | None = None
    end_time: str | None = None
    output: BatchOutput | None = None


#: A batch, as batches.get returns it.
BatchOperation = Operation[BatchResource, BatchOutput]
