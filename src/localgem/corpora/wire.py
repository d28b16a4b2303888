"""Corpus, Document, Chunk, Permission and the retriever's requests and responses, as on the wire."""

from __future__ import annotations

from localgem.retrieval.conditions import MetadataFilter
from localgem.retrieval.custom_metadata import CustomMetadata
from localgem.types.wire import Int32, Timestamp, WireModel


class Corpus(WireModel):
    name: str | None = None
    display_name: str | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None


class ListCorporaResponse(WireModel):
    corpora: list[Corpus] | None = None
    next_page_token: str | None = None


class CorpusDocument(WireModel):
    name: str | None = None
    display_name: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None


class ListCorpusDocumentsResponse(WireModel):
    documents: list[CorpusDocument] | None = None
    next_page_token: str | None = None


class ChunkData(WireModel):
    string_value: str | None = None


class Chunk(WireModel):
    name: str | None = None
    data: ChunkData | None = None
    custom_metadata: list[CustomMetadata] | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None
    state: str | None = None


class ListChunksResponse(WireModel):
    chunks: list[Chunk] | None = None
    next_page_token: str | None = None


class CreateChunkRequest(WireModel):
    parent: str | None = None
    chunk: Chunk | None = None


class BatchCreateChunksRequest(WireModel):
    requests: list[CreateChunkRequest] | None = None


class UpdateChunkRequest(WireModel):
    chunk: Chunk | None = None
    update_mask: str | None = None


class BatchUpdateChunksRequest(WireModel):
    requests: list[UpdateChunkRequest] | None = None


class DeleteChunkRequest(WireModel):
    name: str | None = None


class BatchDeleteChunksRequest(WireModel):
    requests: list[DeleteChunkRequest] | None = None


class ChunksResponse(WireModel):
    """BatchCreateChunksResponse / BatchUpdateChunksResponse."""

    chunks: list[Chunk] | None = None


class QueryRequest(WireModel):
    """QueryCorpusRequest / QueryDocumentRequest."""

    query: str | None = None
    metadata_filters: list[MetadataFilter] | None = None
    results_count: Int32 | None = None


class RelevantChunk(WireModel):
    chunk_relevance_score: float | None = None
    chunk: Chunk | None = None
    document: CorpusDocument | None = None


class QueryResponse(WireModel):
    relevant_chunks: list[RelevantChunk] | None = None
