"""``uploadToFileSearchStore``: an upload session (``files.uploads``, the same resumable, multipart and
one-shot protocol as files) whose bytes become a document of a store instead of a file. The session's
target names the store and the document to make; the finished upload answers with the document's
operation, and so does every later command on that session."""

from __future__ import annotations

import json
from typing import Any

from localgem import names
from localgem.file_search.service import (
    MAX_DOCUMENT_BYTES,
    FileSearchOperation,
    FileSearchService,
    NewDocument,
)
from localgem.file_search.wire import UploadToFileSearchStoreRequest
from localgem.files.uploads import Proposal
from localgem.operations.runner import Runner
from localgem.storage.blobs import Sealed
from localgem.storage.file_search import FileSearchRepository
from localgem.storage.records import UploadRecord

KIND = "fileSearchStore"


class DocumentUploads:
    """The ``UploadSink`` of File Search stores."""

    def __init__(self, service: FileSearchService, repository: FileSearchRepository, runner: Runner) -> None:
        self._service = service
        self._repo = repository
        self._runner = runner

    async def proposal(
        self,
        project: str,
        store: str,
        request: UploadToFileSearchStoreRequest,
        *,
        size: int | None,
        file_name: str | None,
        media_type: str | None = None,
    ) -> Proposal:
        """The upload session to start, once the store and the request are known to be good."""
        record = await self._service.store_record(project, store)
        self._service.check_upload(request, size)
        mime_type = request.mime_type or media_type or None
        target = {
            "kind": KIND,
            "store": record.id,
            "document": names.id_from(request.display_name or file_name),
            "request": request.model_copy(update={"mime_type": mime_type}).to_wire(),
            "file_name": file_name,
        }
        return Proposal(
            display_name=request.display_name,
            mime_type=mime_type,
            size_bytes=size,
            file_name=file_name,
            target=target,
            max_bytes=MAX_DOCUMENT_BYTES,
        )

    async def finalize(self, session: UploadRecord, sealed: Sealed, publish: Any) -> FileSearchOperation:
        target = json.loads(session.target or "{}")
        store = await self._service.store_record(session.project, target["store"])
        request = UploadToFileSearchStoreRequest.model_validate(target["request"])
        new = NewDocument(
            request.display_name,
            request.mime_type,
            request.custom_metadata,
            request.chunking_config,
            target["file_name"],
        )
        record = self._service.new_document(store, new, "upload", sealed.size_bytes, sealed.sha256, target["document"])
        await self._repo.add_document(record, publish, finalizes_upload=session.id)
        self._runner.added()
        return await self._service.operation_of(record)

    async def finished(self, session: UploadRecord) -> FileSearchOperation:
        target = json.loads(session.target or "{}")
        name = f"fileSearchStores/{target['store']}/upload/operations/{target['document']}"
        return await self._service.get(session.project, name)
