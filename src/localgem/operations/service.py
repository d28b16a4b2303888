"""google.longrunning.Operations: get, list, cancel and delete by name, for every operation collection of the
reference, each answered by the resource that owns the collection (batches today).

A collection no resource serves here holds no operations: its operations are not found and its lists are empty.
"""

from __future__ import annotations

import re
from typing import Protocol

from localgem import errors
from localgem.operations.model import ListOperationsResponse, Operation

#: The operation collections of the reference, by their name pattern (``*``: one id). ``batches`` is the only
#: one whose operations are named ``collection/id`` with no ``/operations/`` segment; ``operations`` is v1's
#: top-level collection (its DeleteOperation binding is ``operations/**``).
COLLECTIONS = (
    "batches",
    "tunedModels/*/operations",
    "models/*/operations",
    "corpora/*/operations",
    "fileSearchStores/*/operations",
    "fileSearchStores/*/upload/operations",
    "ragStores/*/operations",
    "ragStores/*/upload/operations",
    "generatedFiles/*/operations",
    "operations",
)
_PATTERNS = {c: re.compile("/".join("[^/]+" if s == "*" else s for s in c.split("/"))) for c in COLLECTIONS}


class OperationSource(Protocol):
    """A resource that holds the operations of a collection (e.g. ``BatchService`` for ``batches``)."""

    async def get(self, project: str, name: str) -> Operation: ...
    async def list(
        self, project: str, parent: str, page_size: int | None, page_token: str | None
    ) -> ListOperationsResponse: ...
    async def cancel(self, project: str, name: str) -> None: ...
    async def delete(self, project: str, name: str) -> None: ...


class OperationService:
    def __init__(self) -> None:
        self._sources: dict[str, OperationSource] = {}

    def serve(self, collection: str, source: OperationSource) -> None:
        """``source`` answers for the operations of ``collection`` (one of ``COLLECTIONS``)."""
        if collection not in _PATTERNS:
            raise ValueError(f"{collection!r} is not an operation collection of the API")
        self._sources[collection] = source

    async def get(self, project: str, name: str) -> Operation:
        return await self._source_of(name).get(project, name)

    async def list(
        self, project: str, parent: str, page_size: int | None, page_token: str | None
    ) -> ListOperationsResponse:
        """The operations of the collection ``parent`` (``batches``, ``tunedModels/x/operations``…)."""
        collection = _collection(parent)
        source = self._sources.get(collection) if collection else None
        if source is None:
            if collection is None:
                raise errors.NotFound(f"{parent} not found.")
            return ListOperationsResponse(operations=[])
        return await source.list(project, parent, page_size, page_token)

    async def cancel(self, project: str, name: str) -> None:
        await self._source_of(name).cancel(project, name)

    async def delete(self, project: str, name: str) -> None:
        await self._source_of(name).delete(project, name)

    def _source_of(self, name: str) -> OperationSource:
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        collection = _collection(parent)
        if collection is None and name.startswith("operations/"):
            collection = "operations"  # operations/** may hold further slashes
        source = self._sources.get(collection) if collection else None
        if source is None:
            raise errors.NotFound(f"Operation {name} not found.")
        return source


def _collection(parent: str) -> str | None:
    for collection, pattern in _PATTERNS.items():
        if pattern.fullmatch(parent):
            return collection
    return None
