"""Corpora, their documents and chunks, ``:query``, and permissions. Knows nothing of HTTP.

Access: the project that made a corpus owns it; a permission grants a project (a USER or GROUP grantee,
whose email address names the project: ``team`` or ``team@…``) or EVERYONE a role. READER may read and
query, WRITER may also write documents and chunks and share, OWNER may also rename, delete and manage
every permission. A corpus a project has no role on is not found (404); a role too weak for the call is
PERMISSION_DENIED (403).

Chunks are embedded when written, with the server's embedding model, and indexed with their document's
custom metadata under their own (filters read both); a chunk is ACTIVE once it is in the index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from localgem import errors, names
from localgem.auth.grants import Grants
from localgem.corpora.wire import (
    BatchCreateChunksRequest,
    BatchDeleteChunksRequest,
    BatchUpdateChunksRequest,
    Chunk,
    ChunkData,
    ChunksResponse,
    Corpus,
    CorpusDocument,
    ListChunksResponse,
    ListCorporaResponse,
    ListCorpusDocumentsResponse,
    QueryRequest,
    QueryResponse,
    RelevantChunk,
)
from localgem.embeddings.service import EmbedderPool
from localgem.engines.embedding.engine import EmbeddingBatcher
from localgem.models.registry import ModelRegistry
from localgem.retrieval.conditions import to_filter
from localgem.retrieval.custom_metadata import loaded, metadata, stored
from localgem.retrieval.index import ChunkIndex, IndexedChunk
from localgem.storage.corpora import CorpusRepository, Exists
from localgem.storage.records import ChunkRecord, CorpusDocumentRecord, CorpusRecord
from localgem.types.field_mask import update_paths
from localgem.types.paging import paginate
from localgem.types.permissions import ListPermissionsResponse, Permission
from localgem.types.wire import rfc3339

Clock = Callable[[], datetime]

MAX_BATCH = 100
MAX_CHUNK_TOKENS = 2043
MAX_RESULTS = 100
MAX_DOCUMENTS = 10_000


class CorpusService:
    def __init__(
        self,
        repository: CorpusRepository,
        index: ChunkIndex,
        registry: ModelRegistry,
        embedders: EmbedderPool,
        clock: Clock,
        embedding_model: str | None,
    ) -> None:
        self._repo = repository
        self._index = index
        self._registry = registry
        self._embedders = embedders
        self._clock = clock
        self._embedding_model = embedding_model
        self._grants = Grants(repository, "corpora", clock)

    # Corpora.

    async def create_corpus(self, project: str, body: Corpus) -> Corpus:
        corpus_id = _chosen_id(body.name, "corpora", body.display_name)
        _display_name(body.display_name)
        now = self._clock()
        record = CorpusRecord(corpus_id, project, body.display_name, now, now)
        try:
            await self._repo.add_corpus(record)
        except Exists:
            raise errors.AlreadyExists(f"Corpus corpora/{corpus_id} already exists.") from None
        return _corpus(record)

    async def get_corpus(self, project: str, name: str) -> Corpus:
        return _corpus(await self._corpus(project, name, "READER"))

    async def list_corpora(self, project: str, page_size: int | None, page_token: str | None) -> ListCorporaResponse:
        page, token = paginate(await self._repo.corpora(project), page_size, page_token, default_size=10, max_size=20)
        return ListCorporaResponse(corpora=[_corpus(r) for r in page] or None, next_page_token=token)

    async def update_corpus(self, project: str, name: str, body: Corpus, update_mask: str | None) -> Corpus:
        record = await self._corpus(project, name, "OWNER")
        update_paths(update_mask, body, ("display_name",), "Only display_name of a Corpus can be updated.")
        _display_name(body.display_name)
        await self._repo.update_corpus(record.id, {"display_name": body.display_name}, self._clock())
        return await self.get_corpus(project, name)

    async def delete_corpus(self, project: str, name: str, force: bool) -> None:
        record = await self._corpus(project, name, "OWNER")
        if not force and await self._repo.count_documents(record.id):
            raise errors.FailedPrecondition(
                f"Cannot delete non-empty Corpus corpora/{record.id}: delete its documents or pass force=true."
            )
        await self._repo.remove_corpus(record.id)
        await self._index.delete_store(_store(record.id))

    async def query_corpus(self, project: str, name: str, body: QueryRequest) -> QueryResponse:
        record = await self._corpus(project, name, "READER")
        return await self._query(record.id, body, None)

    # Documents.

    async def create_document(self, project: str, corpus: str, body: CorpusDocument) -> CorpusDocument:
        record = await self._corpus(project, corpus, "WRITER")
        document_id = _chosen_id(body.name, f"corpora/{record.id}/documents", body.display_name)
        _display_name(body.display_name)
        metadata(body.custom_metadata)
        if await self._repo.count_documents(record.id) >= MAX_DOCUMENTS:
            raise errors.ResourceExhausted(f"A Corpus can have at most {MAX_DOCUMENTS} Documents.")
        now = self._clock()
        document = CorpusDocumentRecord(
            record.id, document_id, body.display_name, stored(body.custom_metadata), now, now
        )
        try:
            await self._repo.add_document(document)
        except Exists:
            raise errors.AlreadyExists(f"Document {_document_name(document)} already exists.") from None
        return _document(document)

    async def get_document(self, project: str, corpus: str, document: str) -> CorpusDocument:
        return _document(await self._document(project, corpus, document, "READER"))

    async def list_documents(
        self, project: str, corpus: str, page_size: int | None, page_token: str | None
    ) -> ListCorpusDocumentsResponse:
        record = await self._corpus(project, corpus, "READER")
        documents = await self._repo.documents(record.id)
        page, token = paginate(documents, page_size, page_token, default_size=10, max_size=20)
        return ListCorpusDocumentsResponse(documents=[_document(d) for d in page] or None, next_page_token=token)

    async def update_document(
        self, project: str, corpus: str, document: str, body: CorpusDocument, update_mask: str | None
    ) -> CorpusDocument:
        record = await self._document(project, corpus, document, "WRITER")
        paths = update_paths(
            update_mask,
            body,
            ("display_name", "custom_metadata"),
            "Only display_name and custom_metadata of a Document can be updated.",
        )
        changes = {}
        if "display_name" in paths:
            changes["display_name"] = _display_name(body.display_name)
        if "custom_metadata" in paths:
            metadata(body.custom_metadata)
            changes["custom_metadata"] = stored(body.custom_metadata)
        await self._repo.update_document(record.corpus_id, record.id, changes, self._clock())
        if "custom_metadata" in paths:  # its chunks are filtered by it: index them again
            updated = await self._repo.document(record.corpus_id, record.id)
            assert updated is not None
            await self._index_chunks(updated, await self._repo.chunks(record.corpus_id, record.id))
        return await self.get_document(project, corpus, document)

    async def delete_document(self, project: str, corpus: str, document: str, force: bool) -> None:
        record = await self._document(project, corpus, document, "WRITER")
        if not force and await self._repo.count_chunks(record.corpus_id, record.id):
            raise errors.FailedPrecondition(
                f"Cannot delete non-empty Document {_document_name(record)}: delete its chunks or pass force=true."
            )
        await self._repo.remove_document(record.corpus_id, record.id)
        await self._index.delete_documents(_store(record.corpus_id), [_document_name(record)])

    async def query_document(self, project: str, corpus: str, document: str, body: QueryRequest) -> QueryResponse:
        record = await self._document(project, corpus, document, "READER")
        return await self._query(record.corpus_id, body, record)

    # Chunks.

    async def create_chunks(
        self, project: str, corpus: str, document: str, body: BatchCreateChunksRequest, *, single: bool = False
    ) -> ChunksResponse:
        record = await self._document(project, corpus, document, "WRITER")
        requests = _batch(body.requests, "requests")
        parent = _document_name(record)
        now = self._clock()
        chunks = []
        for i, request in enumerate(requests):
            where = "" if single else f"requests[{i}]."
            if request.parent and request.parent != parent:
                raise errors.invalid_field(f"{where}parent", f"{where}parent must be {parent}, the URL's document.")
            chunk = request.chunk or Chunk()
            chunk_id = _chosen_id(chunk.name, f"{parent}/chunks", None, field=f"{where}chunk.name")
            _chunk_text(chunk, f"{where}chunk")
            metadata(chunk.custom_metadata, f"{where}chunk.custom_metadata")
            chunks.append(
                ChunkRecord(
                    record.corpus_id,
                    record.id,
                    chunk_id,
                    (chunk.data.string_value if chunk.data else None) or "",
                    stored(chunk.custom_metadata),
                    "STATE_ACTIVE",
                    now,
                    now,
                )
            )
        if len({c.id for c in chunks}) != len(chunks):
            raise errors.invalid_field("requests", "Two requests name the same chunk.")
        await self._check_tokens(chunks, "" if single else "requests")
        try:
            await self._repo.add_chunks(chunks)
        except Exists:
            raise errors.AlreadyExists("A chunk of that name exists already.") from None
        await self._index_chunks(record, chunks)
        return ChunksResponse(chunks=[_chunk(c) for c in chunks])

    async def get_chunk(self, project: str, corpus: str, document: str, chunk: str) -> Chunk:
        return _chunk((await self._chunk(project, corpus, document, chunk, "READER"))[1])

    async def list_chunks(
        self, project: str, corpus: str, document: str, page_size: int | None, page_token: str | None
    ) -> ListChunksResponse:
        record = await self._document(project, corpus, document, "READER")
        chunks = await self._repo.chunks(record.corpus_id, record.id)
        page, token = paginate(chunks, page_size, page_token, default_size=10, max_size=100)
        return ListChunksResponse(chunks=[_chunk(c) for c in page] or None, next_page_token=token)

    async def update_chunks(
        self, project: str, corpus: str, document: str, body: BatchUpdateChunksRequest, *, single: bool = False
    ) -> ChunksResponse:
        record = await self._document(project, corpus, document, "WRITER")
        parent = _document_name(record)
        now = self._clock()
        updated: list[ChunkRecord] = []
        for i, request in enumerate(_batch(body.requests, "requests")):
            where = "" if single else f"requests[{i}]."
            chunk = request.chunk or Chunk()
            name = chunk.name or ""
            if not name.startswith(f"{parent}/chunks/"):
                raise errors.invalid_field(f"{where}chunk.name", f"{where}chunk.name must be a chunk of {parent}.")
            current = await self._repo.chunk(record.corpus_id, record.id, name.rsplit("/", 1)[1])
            if current is None:
                raise errors.NotFound(f"Chunk {name[:200]} not found.")
            mask = (request.update_mask or "").replace("data.string_value", "data").replace("data.stringValue", "data")
            paths = update_paths(
                mask or None,
                chunk,
                ("data", "custom_metadata"),
                "Only data and custom_metadata of a Chunk can be updated.",
            )
            changes: dict = {"update_time": now}
            if "data" in paths:
                _chunk_text(chunk, f"{where}chunk")
                changes["data"] = chunk.data.string_value if chunk.data else ""
            if "custom_metadata" in paths:
                metadata(chunk.custom_metadata, f"{where}chunk.custom_metadata")
                changes["custom_metadata"] = stored(chunk.custom_metadata)
            updated.append(replace(current, **changes))
        await self._check_tokens(updated, "" if single else "requests")
        await self._repo.replace_chunks(updated)
        await self._index_chunks(record, updated)
        return ChunksResponse(chunks=[_chunk(c) for c in updated])

    async def delete_chunks(self, project: str, corpus: str, document: str, body: BatchDeleteChunksRequest) -> None:
        record = await self._document(project, corpus, document, "WRITER")
        parent = _document_name(record)
        keys = []
        for i, request in enumerate(_batch(body.requests, "requests")):
            name = request.name or ""
            if not name.startswith(f"{parent}/chunks/"):
                raise errors.invalid_field(f"requests[{i}].name", f"requests[{i}].name must be a chunk of {parent}.")
            keys.append((record.id, name.rsplit("/", 1)[1]))
        found = {(c.document_id, c.id) for c in await self._repo.chunks_named(record.corpus_id, keys)}
        missing = [k for k in keys if k not in found]
        if missing:
            raise errors.NotFound(f"Chunk {parent}/chunks/{missing[0][1]} not found.")
        await self._repo.remove_chunks(record.corpus_id, keys)
        await self._index.delete_chunks([f"{parent}/chunks/{chunk_id}" for _, chunk_id in keys])

    async def delete_chunk(self, project: str, corpus: str, document: str, chunk: str) -> None:
        record, found = await self._chunk(project, corpus, document, chunk, "WRITER")
        name = f"{_document_name(record)}/chunks/{found.id}"
        await self.delete_chunks(
            project, corpus, document, BatchDeleteChunksRequest.model_validate({"requests": [{"name": name}]})
        )

    # Permissions.

    async def create_permission(self, project: str, corpus: str, body: Permission) -> Permission:
        record, role = await self._corpus_role(project, corpus, "WRITER")
        return await self._grants.create(role, record.id, body)

    async def get_permission(self, project: str, corpus: str, permission: str) -> Permission:
        record = await self._corpus(project, corpus, "READER")
        return await self._grants.get(record.id, permission)

    async def list_permissions(
        self, project: str, corpus: str, page_size: int | None, page_token: str | None
    ) -> ListPermissionsResponse:
        record = await self._corpus(project, corpus, "READER")
        return await self._grants.list(record.id, page_size, page_token)

    async def update_permission(
        self, project: str, corpus: str, permission: str, body: Permission, update_mask: str | None
    ) -> Permission:
        record = await self._corpus(project, corpus, "OWNER")
        return await self._grants.update(record.id, permission, body, update_mask)

    async def delete_permission(self, project: str, corpus: str, permission: str) -> None:
        record, role = await self._corpus_role(project, corpus, "WRITER")
        await self._grants.delete(role, record.id, permission)

    # Access and lookups.

    async def _corpus(self, project: str, name: str, need: str) -> CorpusRecord:
        return (await self._corpus_role(project, name, need))[0]

    async def _corpus_role(self, project: str, name: str, need: str) -> tuple[CorpusRecord, str]:
        corpus_id = names.lookup_id(name, "corpora", _corpus_not_found)
        record = await self._repo.corpus(corpus_id)
        owner = record.project if record is not None else None
        role = await self._grants.require(project, owner, corpus_id, need, _corpus_not_found(corpus_id))
        assert record is not None
        return record, role

    async def _document(self, project: str, corpus: str, document: str, need: str) -> CorpusDocumentRecord:
        record = await self._corpus(project, corpus, need)
        document_id = names.lookup_id(document, "documents")
        found = await self._repo.document(record.id, document_id)
        if found is None:
            raise errors.NotFound(f"Document corpora/{record.id}/documents/{document_id} not found.")
        return found

    async def _chunk(
        self, project: str, corpus: str, document: str, chunk: str, need: str
    ) -> tuple[CorpusDocumentRecord, ChunkRecord]:
        record = await self._document(project, corpus, document, need)
        chunk_id = names.lookup_id(chunk, "chunks")
        found = await self._repo.chunk(record.corpus_id, record.id, chunk_id)
        if found is None:
            raise errors.NotFound(f"Chunk {_document_name(record)}/chunks/{chunk_id} not found.")
        return record, found

    # Embedding and search.

    async def _batcher(self) -> EmbeddingBatcher:
        if not self._embedding_model:
            raise errors.FailedPrecondition("This server has no embedding model: corpora cannot be searched.")
        return await self._embedders.get(self._registry.resolve(self._embedding_model, "embedContent"))

    async def _check_tokens(self, chunks: Sequence[ChunkRecord], where: str) -> None:
        counts = await (await self._batcher()).count_tokens([c.data for c in chunks])
        for i, count in enumerate(counts):
            if count > MAX_CHUNK_TOKENS:
                field = f"{where}[{i}].chunk.data" if where else "chunk.data"
                raise errors.invalid_field(
                    field, f"A chunk may hold at most {MAX_CHUNK_TOKENS} tokens; it has {count}."
                )

    async def _index_chunks(self, document: CorpusDocumentRecord, chunks: Sequence[ChunkRecord]) -> None:
        if not chunks:
            return
        embedded = await (await self._batcher()).embed([c.data for c in chunks], [True] * len(chunks))
        shared = metadata(loaded(document.custom_metadata))
        name = _document_name(document)
        await self._index.add(
            [
                IndexedChunk(
                    _store(document.corpus_id),
                    name,
                    f"{name}/chunks/{c.id}",
                    c.data,
                    e.vector,
                    {**shared, **metadata(loaded(c.custom_metadata))},
                )
                for c, e in zip(chunks, embedded, strict=True)
                if e.vector is not None
            ]
        )

    async def _query(self, corpus_id: str, body: QueryRequest, document: CorpusDocumentRecord | None) -> QueryResponse:
        if not body.query or not body.query.strip():
            raise errors.invalid_field("query", "query is required.")
        count = body.results_count or 10
        if not 1 <= count <= MAX_RESULTS:
            raise errors.invalid_field("results_count", f"results_count must be from 1 to {MAX_RESULTS}.")
        condition = to_filter(body.metadata_filters)
        (embedded,) = await (await self._batcher()).embed([body.query], [True])
        assert embedded.vector is not None
        only = [_document_name(document)] if document is not None else None
        hits = await self._index.search([_store(corpus_id)], embedded.vector, body.query, count, condition, only)
        keys = [(h.chunk_id.split("/")[3], h.chunk_id.rsplit("/", 1)[1]) for h in hits]
        chunks = {(c.document_id, c.id): c for c in await self._repo.chunks_named(corpus_id, keys)}
        documents: dict[str, CorpusDocumentRecord | None] = {}
        relevant = []
        for hit, key in zip(hits, keys, strict=True):
            if key not in chunks:
                continue  # deleted while the search ran
            if document is None and key[0] not in documents:
                documents[key[0]] = await self._repo.document(corpus_id, key[0])
            owner = documents.get(key[0]) if document is None else None
            relevant.append(
                RelevantChunk(
                    chunk_relevance_score=round(hit.similarity, 6),
                    chunk=_chunk(chunks[key]),
                    document=_document(owner) if owner is not None else None,
                )
            )
        return QueryResponse(relevant_chunks=relevant or None)


def _store(corpus_id: str) -> str:
    return f"corpora/{corpus_id}"


def _chosen_id(name: str | None, collection: str, display_name: str | None, *, field: str = "name") -> str:
    """The id a client chose (``collection/id``), else one made from the display name (Google's way)."""
    if name:
        return names.resource_id(name, collection, field=field)
    return names.id_from(display_name)


def _display_name(value: str | None) -> str | None:
    if value is not None and len(value) > 512:
        raise errors.invalid_field("display_name", "display_name must be at most 512 characters.")
    return value


def _batch(requests: list | None, field: str) -> list:
    if not requests:
        raise errors.invalid_field(field, f"{field} must not be empty.")
    if len(requests) > MAX_BATCH:
        raise errors.invalid_field(field, f"At most {MAX_BATCH} chunks can be changed in one batch.")
    return requests


def _chunk_text(chunk: Chunk, where: str) -> None:
    if chunk.data is None or not (chunk.data.string_value or "").strip():
        raise errors.invalid_field(f"{where}.data.string_value", f"{where}.data.string_value is required.")


def _corpus_not_found(corpus_id: str) -> errors.NotFound:
    return errors.NotFound(f"Corpus corpora/{corpus_id[:100]} not found.")


def _document_name(record: CorpusDocumentRecord) -> str:
    return f"corpora/{record.corpus_id}/documents/{record.id}"


def _corpus(record: CorpusRecord) -> Corpus:
    return Corpus(
        name=f"corpora/{record.id}",
        display_name=record.display_name,
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
    )


def _document(record: CorpusDocumentRecord) -> CorpusDocument:
    return CorpusDocument(
        name=_document_name(record),
        display_name=record.display_name,
        custom_metadata=loaded(record.custom_metadata),
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
    )


def _chunk(record: ChunkRecord) -> Chunk:
    return Chunk(
        name=f"corpora/{record.corpus_id}/documents/{record.document_id}/chunks/{record.id}",
        data=ChunkData(string_value=record.data),
        custom_metadata=loaded(record.custom_metadata),
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
        state=record.state,
    )
