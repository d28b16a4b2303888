"""Batch requests as clients send them: EmbedContentBatch and GenerateContentBatch, one shape over two
request types."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from localgem.embeddings.wire import EmbedContentRequest
from localgem.types.generation import GenerateContentRequest
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
