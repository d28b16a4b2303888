"""File Search's parts over one repository and one chunk index, so the app wires a single object: the
service (stores, documents, operations), the ``fileSearch`` tool, the upload sink, and the runner that
ingests documents (its own, so a long batch does not hold documents up)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from localgem.embeddings.service import EmbedderPool
from localgem.file_search.ingestion import IngestExecutor
from localgem.file_search.retriever import FileSearchTool
from localgem.file_search.service import Clock, FileSearchService
from localgem.file_search.uploads import KIND, DocumentUploads
from localgem.files.compose import Files
from localgem.models.registry import ModelRegistry
from localgem.operations.runner import Runner
from localgem.retrieval.index import ChunkIndex
from localgem.storage.blobs import BlobStore
from localgem.storage.file_search import FileSearchRepository


@dataclass(frozen=True)
class FileSearch:
    service: FileSearchService
    tool: FileSearchTool
    uploads: DocumentUploads
    runner: Runner

    @classmethod
    def build(
        cls,
        repository: FileSearchRepository,
        index: ChunkIndex,
        blobs: BlobStore,
        files: Files,
        registry: ModelRegistry,
        embedders: EmbedderPool,
        clock: Clock,
        *,
        embedding_model: str | None,
        lease: timedelta,
        deadline: timedelta,
    ) -> FileSearch:
        runner = Runner(clock, lease=lease, deadline=deadline)
        service = FileSearchService(repository, blobs, index, registry, files.service, runner, clock, embedding_model)
        uploads = DocumentUploads(service, repository, runner)
        files.uploads.add_sink(KIND, uploads)
        runner.register("ingest", IngestExecutor(repository, blobs, index, registry, embedders), repository)
        return cls(service, FileSearchTool(repository, index, registry, embedders), uploads, runner)
