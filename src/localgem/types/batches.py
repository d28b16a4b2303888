"""Batch requests: EmbedContentBatch (and, later, GenerateContentBatch) as clients send them."""

from __future__ import annotations

from typing import Any

from localgem.types.embeddings import EmbedContentRequest
from localgem.types.generation import GenerateContentRequest
from localgem.types.wire import Int64, WireModel


class InlinedEmbedContentRequest(WireModel):
    request: EmbedContentRequest | None = None
    metadata: dict[str, Any] | None = None


class InlinedEmbedContentRequests(WireModel):
    requests: list[InlinedEmbedContentRequest] | None = None


class InputEmbedContentConfig(WireModel):
    file_name: str | None = None
    requests: InlinedEmbedContentRequests | None = None


class EmbedContentBatch(WireModel):
    model: str | None = None
    display_name: str | None = None
    input_config: InputEmbedContentConfig | None = None
    priority: Int64 | None = None
    # Output only: accepted (a client may send back what it read) and ignored.
    name: Any = None
    state: Any = None
    output: Any = None
    batch_stats: Any = None
    create_time: Any = None
    update_time: Any = None
    end_time: Any = None


class AsyncBatchEmbedContentRequest(WireModel):
    batch: EmbedContentBatch | None = None


class InlinedRequest(WireModel):
    request: GenerateContentRequest | None = None
    metadata: dict[str, Any] | None = None


class InlinedRequests(WireModel):
    requests: list[InlinedRequest] | None = None


class InputConfig(WireModel):
    file_name: str | None = None
    requests: InlinedRequests | None = None


class GenerateContentBatch(WireModel):
    model: str | None = None
    display_name: str | None = None
    input_config: InputConfig | None = None
    priority: Int64 | None = None
    # Output only: accepted (a client may send back what it read) and ignored.
    name: Any = None
    state: Any = None
    output: Any = None
    batch_stats: Any = None
    create_time: Any = None
    update_time: Any = None
    end_time: Any = None


class BatchGenerateContentRequest(WireModel):
    batch: GenerateContentBatch | None = None
