"""Ingesting a document: its bytes → text (``retrieval.extract``) → chunks by the store's embedding model's
tokens (``retrieval.chunking``) → embeddings, batched with every other caller of that model → the chunk
index, all of a document's chunks at once → ACTIVE.

It runs as an operation under a lease (``operations.runner``): a server that dies mid-way leaves the
document PENDING and another run starts it over, replacing whatever the first run had indexed. Only the
lease holder can make the document ACTIVE, after its chunks are in; retrieval serves only ACTIVE
documents' chunks, so no half-indexed document is ever found. A document that cannot be read fails alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

from localgem import errors
from localgem.embeddings.service import EmbedderPool
from localgem.file_search.service import UNKNOWN_TYPE, store_key
from localgem.models.registry import ModelRegistry
from localgem.operations.runner import Lease
from localgem.retrieval.chunking import Chunk, ChunkingRule, WordTokens, chunk_text
from localgem.retrieval.custom_metadata import loaded, metadata
from localgem.retrieval.extract import extract, guess_mime
from localgem.retrieval.index import ChunkIndex, IndexedChunk
from localgem.storage.blobs import BlobStore
from localgem.storage.file_search import ACTIVE, FAILED, FileSearchRepository
from localgem.storage.records import DocumentRecord

log = logging.getLogger(__name__)

#: Chunks embedded per request to the embedding engine (the lease is renewed between them).
EMBED_GROUP = 64
_COUNT_GROUP = 20_000
_WORD = re.compile(r"\S+")


def _known(counts: list[int]) -> WordTokens:
    """The word counts of a text, computed already (on the embedder's thread)."""
    return lambda _words: counts


class IngestExecutor:
    def __init__(
        self,
        repository: FileSearchRepository,
        blobs: BlobStore,
        index: ChunkIndex,
        registry: ModelRegistry,
        embedders: EmbedderPool,
    ) -> None:
        self._repo = repository
        self._blobs = blobs
        self._index = index
        self._registry = registry
        self._embedders = embedders

    async def run(self, record: DocumentRecord, lease: Lease) -> str | None:
        store = await self._repo.store(record.project, record.store_id)
        if store is None or record.sha256 is None:
            return None  # deleted meanwhile
        name = f"fileSearchStores/{record.store_id}/documents/{record.id}"
        try:
            chunks = await self._chunks(record, store.embedding_model, name, lease)
        except (ValueError, errors.ApiError, FileNotFoundError) as exc:
            log.info("%s failed: %s", name, exc)
            message = exc.message if isinstance(exc, errors.ApiError) else str(exc)
            return FAILED if await self._repo.note(lease.owner, record, error=message[:2000]) else None
        if chunks is None:
            return None
        key = store_key(record.store_id)
        await self._index.delete_documents(key, [name])  # what an earlier, interrupted run left
        await self._index.add(chunks)
        if not await self._repo.note(lease.owner, record, chunk_count=len(chunks)):
            await self._index.delete_documents(key, [name])  # deleted (or taken over) while indexing
            return None
        return ACTIVE

    async def _chunks(self, record: DocumentRecord, model: str, name: str, lease: Lease) -> list[IndexedChunk] | None:
        entry = self._registry.resolve(model, "embedContent")
        batcher = await self._embedders.get(entry)
        data = await self._blobs.read_all(record.sha256 or "")
        mime_type = record.mime_type
        if mime_type == UNKNOWN_TYPE:
            mime_type = guess_mime(data, None)
            await self._repo.note(lease.owner, record, mime_type=mime_type)
        sections = await asyncio.to_thread(extract, data, mime_type)
        rule = ChunkingRule(**json.loads(record.chunking))
        (overhead,) = await batcher.count_tokens([""])  # the tokens every text gets ([CLS], [SEP]…)
        pieces: list[tuple[Chunk, int | None]] = []
        for section in sections:
            words = _WORD.findall(section.text)
            counts = []
            for at in range(0, len(words), _COUNT_GROUP):  # a 100 MB text is millions of words
                counts += [n - overhead for n in await batcher.count_tokens(words[at : at + _COUNT_GROUP])]
            pieces += [(c, section.page) for c in chunk_text(section.text, rule, _known(counts))]
        if not pieces:
            raise ValueError("The document has no text to index.")
        found = metadata(loaded(record.custom_metadata))
        chunks: list[IndexedChunk] = []
        for start in range(0, len(pieces), EMBED_GROUP):
            group = pieces[start : start + EMBED_GROUP]
            embedded = await batcher.embed([c.text for c, _ in group], [True] * len(group))
            for k, ((chunk, page), result) in enumerate(zip(group, embedded, strict=True)):
                assert result.vector is not None  # texts may be cut: every one has a vector
                chunks.append(
                    IndexedChunk(
                        store=store_key(record.store_id),
                        document=name,
                        chunk_id=f"{name}/chunks/{start + k}",
                        text=chunk.text,
                        embedding=result.vector,
                        metadata=found,
                        page=page,
                    )
                )
            if not await lease.renew():
                return None
        return chunks
