"""FileSearchStore, Document and the File Search requests and responses, as on the wire."""

from __future__ import annotations

from pydantic import Field

from localgem.retrieval.custom_metadata import CustomMetadata
from localgem.types.wire import Int32, Int64, Timestamp, WireModel

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."


class WhiteSpaceConfig(WireModel):
    max_tokens_per_chunk: Int32 | None = None
    max_overlap_tokens: Int32 | None = None


class ChunkingConfig(WireModel):
    white_space_config: WhiteSpaceConfig | None = None


class FileSearchStore(WireModel):
    name: str | None = None
    display_name: str | None = None
    embedding_model: str | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None
    active_documents_count: Int64 | None = None
    pending_documents_count: Int64 | None = None
    failed_documents_count: Int64 | None = None
    size_bytes: Int64 | None = None


class ListFileSearchStoresResponse(WireModel):
    file_search_stores: list[FileSearchStore] | None = None
    next_page_token: str | None = None


class Document(WireModel):
    name: str | None = None
    display_name: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    state: str | None = None
    size_bytes: Int64 | None = None
    mime_type: str | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None


class ListDocumentsResponse(WireModel):
    documents: list[Document] | None = None
    next_page_token: str | None = None


class ImportFileRequest(WireModel):
    file_name: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    chunking_config: ChunkingConfig | None = None


class UploadToFileSearchStoreRequest(WireModel):
    display_name: str | None = None
    mime_type: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    chunking_config: ChunkingConfig | None = None


class DocumentOperationResponse(WireModel):
    """ImportFileResponse / UploadToFileSearchStoreResponse (the latter also says the type and size)."""

    type_: str = Field(alias="@type")
    parent: str
    document_name: str
    mime_type: str | None = None
    size_bytes: Int64 | None = None
