"""The text of a stored file as it enters a prompt (a ``fileData`` part in generation, counting or
embedding): the PDF text extracted at upload, or the document's own text; refused if unreadable."""

from __future__ import annotations

import re

from localgem import errors, names
from localgem.files import documents
from localgem.files.service import Clock, not_found
from localgem.perception import Perceived, Senses
from localgem.storage.blobs import BlobStore
from localgem.storage.files import FileRepository
from localgem.storage.records import FileRecord

_FILE_URI = re.compile(r"(?:^|/)files/([^/?#]+)$")
#: A file larger than this cannot fit any model's context as text; refuse before reading it.
_MAX_PROMPT_FILE_BYTES = 64 * 1024 * 1024


class FileText:
    def __init__(
        self,
        files: FileRepository,
        blobs: BlobStore,
        clock: Clock,
        senses: Senses | None = None,
    ) -> None:
        self._files = files
        self._blobs = blobs
        self._clock = clock
        self._senses = senses or Senses()

    async def prompt_text(
        self, project: str, file_uri: str, mime_type: str | None, where: str, *, vision: bool = False
    ) -> Perceived | tuple[str, str]:
        """The text a fileData part puts into the prompt, and the file's MIME type; 403 for a file the
        project cannot see. For a model that sees (``vision``), an image or a video is what it sees."""
        record, mime = await self._active(project, file_uri, mime_type, where)
        if vision and self._senses.sees(mime):
            data = await self._blobs.read_all(record.sha256)
            return await self._senses.perceive(data, mime, f"{where}.file_data", inline=False, vision=True)
        if record.text_sha256 is not None:
            return (await self._blobs.read_all(record.text_sha256)).decode("utf-8"), mime
        medium = self._senses.modality(mime) is not None
        if not medium and not documents.is_readable(mime):
            raise documents.unreadable(f"{where}.file_data", mime)
        if record.size_bytes > _MAX_PROMPT_FILE_BYTES:
            raise errors.invalid_field(
                f"{where}.file_data",
                f"File {record.id} ({record.size_bytes} bytes) is too large to read into a prompt.",
            )
        data = await self._blobs.read_all(record.sha256)
        if medium:  # stored before this server processed such files: read now
            return (await self._senses.perceive(data, mime, f"{where}.file_data", inline=False)).text, mime
        return documents.document_text(data, mime, f"{where}.file_data"), mime

    async def data(self, project: str, file_uri: str, mime_type: str | None, where: str) -> tuple[bytes, str]:
        """A stored file's bytes and MIME type (code execution puts them in its working directory)."""
        record, mime = await self._active(project, file_uri, mime_type, where)
        if record.size_bytes > _MAX_PROMPT_FILE_BYTES:
            raise errors.invalid_field(
                f"{where}.file_data", f"File {record.id} ({record.size_bytes} bytes) is too large."
            )
        return await self._blobs.read_all(record.sha256), mime

    async def _active(self, project: str, file_uri: str, mime_type: str | None, where: str) -> tuple[FileRecord, str]:
        match = _FILE_URI.search(file_uri.strip())
        if match is None:
            raise errors.invalid_field(
                f"{where}.file_uri",
                f"Unsupported file uri {file_uri!r} at {where}.file_uri: use the uri of a file uploaded "
                "with the Files API (…/files/<id>).",
            )
        file_id = match.group(1)
        record = await self._files.get(project, file_id, self._clock()) if names.is_resource_id(file_id) else None
        if record is None:
            raise not_found(file_id)
        if record.state != "ACTIVE":
            raise errors.FailedPrecondition(f"The File {file_id} is not in an ACTIVE state and usage is not allowed.")
        return record, mime_type or record.mime_type
