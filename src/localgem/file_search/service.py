"""File Search stores and their documents: create, get, list, delete; importing a file; the operations that
ingest each document (``fileSearchStores/{s}/operations/{doc}`` for an import, ``…/upload/operations/{doc}``
for an upload: an operation is named by the document it makes, and done when the document is). Knows
nothing of HTTP; ingestion itself is ``ingestion.IngestExecutor``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from localgem import errors, names
from localgem.file_search.wire import (
    TYPE_PREFIX,
    ChunkingConfig,
    Document,
    DocumentOperationResponse,
    FileSearchStore,
    ImportFileRequest,
    ListDocumentsResponse,
    ListFileSearchStoresResponse,
    UploadToFileSearchStoreRequest,
)
from localgem.files.service import FileService
from localgem.models.registry import ModelRegistry
from localgem.operations.model import ListOperationsResponse, Operation
from localgem.operations.runner import Runner
from localgem.retrieval.chunking import ChunkingRule
from localgem.retrieval.custom_metadata import CustomMetadata, loaded, metadata, stored
from localgem.retrieval.extract import mime_by_name
from localgem.retrieval.index import ChunkIndex
from localgem.storage.blobs import BlobStore
from localgem.storage.file_search import FAILED, PENDING, FileSearchRepository
from localgem.storage.records import DocumentCounts, DocumentRecord, FileSearchStoreRecord
from localgem.types.paging import paginate
from localgem.types.status import Status
from localgem.types.wire import rfc3339

Clock = Callable[[], datetime]
FileSearchOperation = Operation[DocumentOperationResponse, DocumentOperationResponse]

#: Google's limits: a document's size, its custom metadata entries, list pages.
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024
#: A document's type until its bytes tell it (see ``ingestion``).
UNKNOWN_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class NewDocument:
    """What a document is made from, before its bytes are stored."""

    display_name: str | None
    mime_type: str | None
    custom_metadata: list[CustomMetadata] | None
    chunking: ChunkingConfig | None
    file_name: str | None = None  # the uploaded file's name, to guess the type and display name from


class FileSearchService:
    def __init__(
        self,
        repository: FileSearchRepository,
        blobs: BlobStore,
        index: ChunkIndex,
        registry: ModelRegistry,
        files: FileService,
        runner: Runner,
        clock: Clock,
        default_embedding_model: str | None,
    ) -> None:
        self._repo = repository
        self._blobs = blobs
        self._index = index
        self._registry = registry
        self._files = files
        self._runner = runner
        self._clock = clock
        self._default_embedding_model = default_embedding_model

    # Stores.

    async def create_store(self, project: str, body: FileSearchStore) -> FileSearchStore:
        model = body.embedding_model or (
            f"models/{self._default_embedding_model}" if self._default_embedding_model else None
        )
        if model is None:
            raise errors.invalid_field("embedding_model", "This server has no embedding model: name one.")
        self._registry.resolve(model, "embedContent")
        display_name = body.display_name
        if display_name is not None and len(display_name) > 512:
            raise errors.invalid_field("display_name", "display_name must be at most 512 characters.")
        now = self._clock()
        record = FileSearchStoreRecord(
            project=project,
            id=names.id_from(display_name),
            display_name=display_name,
            embedding_model=model if model.startswith("models/") else f"models/{model}",
            create_time=now,
            update_time=now,
        )
        await self._repo.add_store(record)
        return _store(record, DocumentCounts())

    async def get_store(self, project: str, name: str) -> FileSearchStore:
        record = await self.store_record(project, name)
        counts = await self._repo.counts(project, [record.id])
        return _store(record, counts[record.id])

    async def list_stores(
        self, project: str, page_size: int | None, page_token: str | None
    ) -> ListFileSearchStoresResponse:
        page, token = paginate(await self._repo.stores(project), page_size, page_token, default_size=10, max_size=20)
        counts = await self._repo.counts(project, [r.id for r in page])
        return ListFileSearchStoresResponse(
            file_search_stores=[_store(r, counts[r.id]) for r in page] or None, next_page_token=token
        )

    async def delete_store(self, project: str, name: str, force: bool) -> None:
        record = await self.store_record(project, name)
        counts = (await self._repo.counts(project, [record.id]))[record.id]
        if not force and counts.active + counts.pending + counts.failed:
            raise errors.FailedPrecondition(
                f"Cannot delete non-empty FileSearchStore fileSearchStores/{record.id}: delete its documents "
                "first, or pass force=true."
            )
        await self._repo.remove_store(project, record.id, self._blobs.delete)
        await self._index.delete_store(store_key(record.id))

    async def store_record(self, project: str, name: str) -> FileSearchStoreRecord:
        store_id = names.lookup_id(name.removeprefix("ragStores/"), "fileSearchStores", _store_not_found)
        record = await self._repo.store(project, store_id)
        if record is None:
            raise _store_not_found(store_id)
        return record

    # Documents.

    async def get_document(self, project: str, store: str, document: str) -> Document:
        return _document(await self._document_record(project, store, document))

    async def list_documents(
        self, project: str, store: str, page_size: int | None, page_token: str | None
    ) -> ListDocumentsResponse:
        record = await self.store_record(project, store)
        documents = await self._repo.documents(project, record.id)
        page, token = paginate(documents, page_size, page_token, default_size=10, max_size=20)
        return ListDocumentsResponse(documents=[_document(d) for d in page] or None, next_page_token=token)

    async def delete_document(self, project: str, store: str, document: str, force: bool) -> None:
        record = await self._document_record(project, store, document)
        if not force and record.chunk_count > 0:
            raise errors.FailedPrecondition(
                f"Cannot delete non-empty Document {_document_name(record)}: it has {record.chunk_count} chunks; "
                "pass force=true."
            )
        await self._repo.remove_document(project, record.store_id, record.id, self._blobs.delete)
        await self._index.delete_documents(store_key(record.store_id), [_document_name(record)])

    async def _document_record(self, project: str, store: str, document: str) -> DocumentRecord:
        store_record = await self.store_record(project, store)
        document_id = names.lookup_id(document, "documents", _document_not_found)
        record = await self._repo.document(project, store_record.id, document_id)
        if record is None:
            raise _document_not_found(document_id)
        return record

    # Making documents: importing a file, or an upload (``file_search.uploads``).

    async def import_file(self, project: str, store: str, body: ImportFileRequest) -> FileSearchOperation:
        record = await self.store_record(project, store)
        if not body.file_name:
            raise errors.invalid_field("file_name", "file_name is required.")
        file = await self._files.stored(project, body.file_name)
        if file.state != "ACTIVE":
            raise errors.FailedPrecondition(f"The File {file.id} is not in an ACTIVE state and usage is not allowed.")
        new = NewDocument(file.display_name or file.id, file.mime_type, body.custom_metadata, body.chunking_config)
        document = self.new_document(record, new, "import", file.size_bytes, file.sha256)
        await self._repo.add_document(document, _nothing_to_store)
        self._runner.added()
        return await self._operation(document)

    def check_upload(self, request: UploadToFileSearchStoreRequest, size: int | None) -> None:
        """A 400 now for what would make the upload's document invalid (before any byte is sent)."""
        if size is not None and size > MAX_DOCUMENT_BYTES:
            raise errors.InvalidArgument(
                f"The document is {size} bytes; a File Search document may be at most {MAX_DOCUMENT_BYTES} bytes."
            )
        _rule(request.chunking_config)
        metadata(request.custom_metadata)

    def new_document(
        self,
        store: FileSearchStoreRecord,
        new: NewDocument,
        origin: str,
        size: int,
        sha256: str | None,
        document_id: str | None = None,
    ) -> DocumentRecord:
        """A pending document of ``store`` (every 4xx about it raised here). A type neither given nor told
        by the name is found from the bytes when the document is ingested."""
        rule = _rule(new.chunking)
        metadata(new.custom_metadata)
        display_name = new.display_name or new.file_name
        named = new.file_name or display_name
        mime_type = new.mime_type or mime_by_name(named) or UNKNOWN_TYPE
        now = self._clock()
        return DocumentRecord(
            project=store.project,
            store_id=store.id,
            id=document_id or names.id_from(display_name),
            display_name=display_name,
            custom_metadata=stored(new.custom_metadata),
            mime_type=mime_type,
            size_bytes=size,
            sha256=sha256,
            state=PENDING,
            origin=origin,
            chunking=json.dumps({"max_tokens": rule.max_tokens, "overlap_tokens": rule.overlap_tokens}),
            create_time=now,
            update_time=now,
        )

    async def operation_of(self, record: DocumentRecord) -> FileSearchOperation:
        return await self._operation(record)

    # The operations of ``fileSearchStores/*/operations`` and ``…/upload/operations`` (see operations.service).

    async def get(self, project: str, name: str) -> FileSearchOperation:
        parts = name.split("/")
        store, document = parts[1], parts[-1]
        record = await self._repo.document(project, names.lookup_id(store, "fileSearchStores", _op_not_found), document)
        origin = "upload" if parts[2] == "upload" else "import"
        if record is None or record.origin != origin:
            raise _op_not_found(name)
        return await self._operation(record)

    async def list(
        self, project: str, parent: str, page_size: int | None, page_token: str | None
    ) -> ListOperationsResponse:
        parts = parent.split("/")
        store = await self.store_record(project, parts[1])
        origin = "upload" if parts[2] == "upload" else "import"
        records = [r for r in await self._repo.documents(project, store.id) if r.origin == origin]
        page, token = paginate(records, page_size, page_token, default_size=50, max_size=1000)
        return ListOperationsResponse(operations=[await self._operation(r) for r in page], next_page_token=token)

    async def cancel(self, project: str, name: str) -> None:
        raise errors.Unimplemented("File Search operations cannot be cancelled: delete the document instead.")

    async def delete(self, project: str, name: str) -> None:
        raise errors.Unimplemented("File Search operations cannot be deleted: delete the document instead.")

    async def _operation(self, record: DocumentRecord) -> FileSearchOperation:
        store = f"fileSearchStores/{record.store_id}"
        collection = "upload/operations" if record.origin == "upload" else "operations"
        operation = FileSearchOperation(name=f"{store}/{collection}/{record.id}", done=record.state != PENDING)
        if record.state == FAILED:
            operation.error = Status(code=3, message=record.error or "The document could not be processed.")
        elif operation.done:
            kind = "UploadToFileSearchStoreResponse" if record.origin == "upload" else "ImportFileResponse"
            upload = record.origin == "upload"
            operation.response = DocumentOperationResponse(
                type_=TYPE_PREFIX + kind,
                parent=store,
                document_name=_document_name(record),
                mime_type=record.mime_type if upload else None,
                size_bytes=record.size_bytes if upload else None,
            )
        return operation


def store_key(store_id: str) -> str:
    """A store's partition in the chunk index."""
    return f"fileSearchStores/{store_id}"


def _rule(config: ChunkingConfig | None) -> ChunkingRule:
    white = config.white_space_config if config is not None else None
    return ChunkingRule.of(
        white.max_tokens_per_chunk if white else None, white.max_overlap_tokens if white else None, "chunking_config"
    )


def _document_name(record: DocumentRecord) -> str:
    return f"fileSearchStores/{record.store_id}/documents/{record.id}"


def _count(value: int) -> int | None:
    return value or None  # Google leaves zero counts out


def _store(record: FileSearchStoreRecord, counts: DocumentCounts) -> FileSearchStore:
    return FileSearchStore(
        name=f"fileSearchStores/{record.id}",
        display_name=record.display_name,
        embedding_model=record.embedding_model,
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
        active_documents_count=_count(counts.active),
        pending_documents_count=_count(counts.pending),
        failed_documents_count=_count(counts.failed),
        size_bytes=_count(counts.size_bytes),
    )


def _document(record: DocumentRecord) -> Document:
    return Document(
        name=_document_name(record),
        display_name=record.display_name,
        custom_metadata=loaded(record.custom_metadata),
        state=record.state,
        size_bytes=record.size_bytes,
        mime_type=record.mime_type,
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
    )


async def _nothing_to_store() -> None:
    """An imported file's bytes are the file's blob already."""


def _store_not_found(store_id: str) -> errors.NotFound:
    return errors.NotFound(f"FileSearchStore fileSearchStores/{store_id[:100]} not found.")


def _document_not_found(document_id: str) -> errors.NotFound:
    return errors.NotFound(f"Documents does not exist: documents/{document_id[:100]}.")


def _op_not_found(name: str) -> errors.NotFound:
    return errors.NotFound(f"Operation {name[:200]} not found.")
