"""Where chunks are found again: the contract every chunk index keeps, and hybrid search over it.

An index holds each chunk's text, its embedding and the metadata filters read (the document's custom
metadata with the chunk's own over it), partitioned by store (a File Search store or a corpus).
``search`` ranks a store's chunks twice, by vector similarity and by keywords, and fuses the two
rankings (``fusion.fuse``); a metadata filter narrows both before they are ranked, so a selective
filter still finds its ``k`` best chunks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from localgem import errors
from localgem.retrieval.metadata_filter import Filter, Metadata

log = logging.getLogger(__name__)

#: Each ranking offers this many candidates per result wanted to the fusion.
FETCH_FACTOR = 4
_WORDS = re.compile(r"\w+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """A query's words for keyword search, lower-cased, each once (none holds search syntax)."""
    return sorted({word.lower() for word in _WORDS.findall(text)})


@dataclass(frozen=True)
class IndexedChunk:
    store: str  # fileSearchStores/… or corpora/…
    document: str  # the document's resource name
    chunk_id: str  # the chunk's resource name, unique in the index
    text: str
    embedding: np.ndarray  # float32, one row
    metadata: Metadata = field(default_factory=dict)
    page: int | None = None  # 1-based page of a paged document (PDF) the chunk is from


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    store: str
    document: str
    text: str
    metadata: Metadata
    similarity: float  # cosine similarity to the query (0 when only the keywords found it)
    score: float  # the fused rank score the hits are ordered by
    page: int | None = None


class ChunkIndex(Protocol):
    async def add(self, chunks: Sequence[IndexedChunk]) -> None:
        """Adds chunks (all at once: a reader never sees half a document's chunks)."""
        ...

    async def delete_documents(self, store: str, documents: Sequence[str]) -> int:
        """Removes every chunk of these documents, text and vector; how many were removed."""
        ...

    async def delete_chunks(self, chunk_ids: Sequence[str]) -> int: ...

    async def delete_store(self, store: str) -> int: ...

    async def search(
        self,
        stores: Sequence[str],
        vector: np.ndarray,
        text: str,
        k: int,
        condition: Filter | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks of ``stores`` (of ``documents`` only, if given) for a query (its embedding
        and its words)."""
        ...

    async def count(self, store: str) -> int: ...

    async def close(self) -> None: ...


class GuardedIndex:
    """An index that may turn out unusable when opened (PostgreSQL without pgvector): the server still
    starts, and File Search answers FAILED_PRECONDITION with the reason rather than taking the server down.
    Deletions succeed (nothing can have been indexed)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._failure: errors.ApiError | None = None

    async def open(self) -> GuardedIndex:
        try:
            await self._inner.open()
        except errors.ApiError as exc:
            log.warning("File Search is unavailable: %s", exc.message)
            self._failure = exc
        return self

    def _usable(self) -> Any:
        if self._failure is not None:
            raise self._failure
        return self._inner

    async def add(self, chunks: Sequence[IndexedChunk]) -> None:
        await self._usable().add(chunks)

    async def delete_documents(self, store: str, documents: Sequence[str]) -> int:
        return 0 if self._failure else await self._inner.delete_documents(store, documents)

    async def delete_chunks(self, chunk_ids: Sequence[str]) -> int:
        return 0 if self._failure else await self._inner.delete_chunks(chunk_ids)

    async def delete_store(self, store: str) -> int:
        return 0 if self._failure else await self._inner.delete_store(store)

    async def search(
        self,
        stores: Sequence[str],
        vector: np.ndarray,
        text: str,
        k: int,
        condition: Filter | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[Hit]:
        return await self._usable().search(stores, vector, text, k, condition, documents)

    async def count(self, store: str) -> int:
        return await self._usable().count(store)

    async def close(self) -> None:
        if self._failure is None:
            await self._inner.close()
