"""``Tool.fileSearch``: before the model answers, the latest user turn is searched for in the named stores
(vector and keyword search fused, narrowed by ``metadataFilter``, ``topK`` best), the passages found are put
in front of the conversation, and the answer comes back with ``groundingMetadata`` naming them.

Only ACTIVE documents' chunks are served (a document still being indexed, or one deleted while a search
ran, is never cited). A store of another project is not found, as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from localgem import errors, names
from localgem.embeddings.service import EmbedderPool
from localgem.file_search.service import store_key
from localgem.generation.conversation import content_text
from localgem.generation.tools import Grounding
from localgem.models.registry import ModelRegistry
from localgem.retrieval.custom_metadata import loaded
from localgem.retrieval.index import ChunkIndex, Hit
from localgem.retrieval.metadata_filter import parse
from localgem.storage.file_search import FileSearchRepository
from localgem.storage.records import DocumentRecord
from localgem.types.content import Content
from localgem.types.tools import FileSearch

DEFAULT_TOP_K = 5
MAX_TOP_K = 100
#: More hits are asked of the index than kept, so chunks of documents not (or no longer) ACTIVE can be dropped.
_SPARE = 2
CONTEXT_HEADER = (
    "Answer from the following passages of the user's documents when they are relevant. "
    "Use only what they say; if they do not hold the answer, say so.\n"
)


class FileSearchTool:
    """The ``ServerTool`` serving ``Tool.file_search``."""

    field = "file_search"

    def __init__(
        self, repository: FileSearchRepository, index: ChunkIndex, registry: ModelRegistry, embedders: EmbedderPool
    ) -> None:
        self._repo = repository
        self._index = index
        self._registry = registry
        self._embedders = embedders

    def check(self, config: FileSearch, where: str) -> None:
        if not config.file_search_store_names:
            raise errors.invalid_field(f"{where}.file_search_store_names", "file_search_store_names is required.")
        for i, name in enumerate(config.file_search_store_names):
            _store_id(name, f"{where}.file_search_store_names[{i}]")
        parse(config.metadata_filter or "", f"{where}.metadata_filter")
        if config.top_k is not None and not 1 <= config.top_k <= MAX_TOP_K:
            raise errors.invalid_field(f"{where}.top_k", f"top_k must be from 1 to {MAX_TOP_K}, not {config.top_k}.")

    async def ground(self, project: str, config: FileSearch, contents: Sequence[Content], where: str) -> Grounding:
        query = _query(contents)
        condition = parse(config.metadata_filter or "", f"{where}.metadata_filter")
        top_k = config.top_k or DEFAULT_TOP_K
        by_model: dict[str, list[str]] = {}
        for i, name in enumerate(config.file_search_store_names or []):
            store_id = _store_id(name, f"{where}.file_search_store_names[{i}]")
            store = await self._repo.store(project, store_id)
            if store is None:
                raise errors.NotFound(f"FileSearchStore fileSearchStores/{store_id} not found.")
            by_model.setdefault(store.embedding_model, []).append(store_id)
        hits: list[Hit] = []
        if query.strip():
            for model, store_ids in by_model.items():
                vector = await self._embed(model, query)
                keys = [store_key(s) for s in store_ids]
                hits += await self._index.search(keys, vector, query, top_k * _SPARE, condition)
        active = await self._repo.active(project, {_document_key(hit.document) for hit in hits})
        hits = sorted((h for h in hits if _document_key(h.document) in active), key=lambda h: -h.score)[:top_k]
        return _grounding(query, hits, active)

    async def _embed(self, model: str, text: str) -> np.ndarray:
        entry = self._registry.resolve(model, "embedContent")
        batcher = await self._embedders.get(entry)
        (embedded,) = await batcher.embed([text], [True])
        assert embedded.vector is not None
        return embedded.vector


def _grounding(query: str, hits: list[Hit], documents: dict[tuple[str, str], DocumentRecord]) -> Grounding:
    chunks: list[dict[str, Any]] = []
    titles: list[str] = []
    for hit in hits:
        record = documents[_document_key(hit.document)]
        titles.append(record.display_name or record.id)
        context: dict[str, Any] = {
            "title": titles[-1],
            "text": hit.text,
            "fileSearchStore": hit.store,
            "uri": hit.document,
        }
        if record.custom_metadata:
            context["customMetadata"] = [m.to_wire() for m in loaded(record.custom_metadata) or []]
        if hit.page is not None:
            context["pageNumber"] = hit.page
        chunks.append({"retrievedContext": context})
    passages = "\n".join(
        f"[{n + 1}] ({title}{f', page {hit.page}' if hit.page else ''}) {hit.text}"
        for n, (hit, title) in enumerate(zip(hits, titles, strict=True))
    )
    return Grounding(
        context=CONTEXT_HEADER + passages if hits else "",
        chunks=chunks,
        passages=[hit.text for hit in hits],
        queries=[query] if query.strip() else [],
    )


def _query(contents: Sequence[Content]) -> str:
    """What to search for: the text of the latest user turn."""
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        if content.role in (None, "user") and any(p.text for p in content.parts or []):
            return content_text(Content(parts=[p for p in content.parts or [] if p.text]), f"contents[{i}]")
    return ""


def _store_id(name: str, where: str) -> str:
    value = name.removeprefix("fileSearchStores/").removeprefix("ragStores/")
    if not names.is_resource_id(value):
        raise errors.invalid_field(where, f"{where}: {name[:200]!r} is not a FileSearchStore name.")
    return value


def _document_key(document: str) -> tuple[str, str]:
    """``fileSearchStores/{s}/documents/{d}`` → (s, d)."""
    parts = document.split("/")
    return parts[1], parts[3]
