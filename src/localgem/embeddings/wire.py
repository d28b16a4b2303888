"""embedContent, batchEmbedContents, and the PaLM-era embedText / batchEmbedText."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import ConfigDict, PlainValidator, WithJsonSchema

from localgem.types.content import Content
from localgem.types.enums import TaskType
from localgem.types.responses import ModalityTokenCount
from localgem.types.wire import Int32, WireModel


class EmbedContentConfig(WireModel):
    """The newer home of the per-request options (the top-level fields are deprecated, both work)."""

    task_type: TaskType | None = None
    title: str | None = None
    output_dimensionality: Int32 | None = None
    auto_truncate: bool | None = None
    document_ocr: bool | None = None
    audio_track_extraction: bool | None = None


class EmbedContentRequest(WireModel):
    model: str | None = None
    content: Content | None = None
    task_type: TaskType | None = None
    title: str | None = None
    output_dimensionality: Int32 | None = None
    embed_content_config: EmbedContentConfig | None = None


class BatchEmbedContentsRequest(WireModel):
    requests: list[EmbedContentRequest] | None = None


#: A vector, kept as float32 numpy until orjson writes it (see WireModel.to_json).
Vector = Annotated[
    np.ndarray, PlainValidator(lambda v: np.asarray(v, dtype=np.float32)), WithJsonSchema({"type": "array"})
]


class ContentEmbedding(WireModel):
    model_config = ConfigDict(**WireModel.model_config, arbitrary_types_allowed=True)

    values: Vector


class EmbeddingUsageMetadata(WireModel):
    prompt_token_count: int
    prompt_token_details: list[ModalityTokenCount] | None = None


class EmbedContentResponse(WireModel):
    embedding: ContentEmbedding
    usage_metadata: EmbeddingUsageMetadata | None = None


class BatchEmbedContentsResponse(WireModel):
    embeddings: list[ContentEmbedding]
    usage_metadata: EmbeddingUsageMetadata | None = None


class EmbedTextRequest(WireModel):
    model: str | None = None
    text: str | None = None


class Embedding(WireModel):
    model_config = ConfigDict(**WireModel.model_config, arbitrary_types_allowed=True)

    value: Vector


class EmbedTextResponse(WireModel):
    embedding: Embedding | None = None


class BatchEmbedTextRequest(WireModel):
    model: str | None = None
    texts: list[str] | None = None
    requests: list[EmbedTextRequest] | None = None


class BatchEmbedTextResponse(WireModel):
    embeddings: list[Embedding]
