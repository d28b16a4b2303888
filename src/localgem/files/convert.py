"""Storage rows → File messages: the one place a stored file becomes what clients see (less its URLs,
which depend on how the client reached the server and are added by the routes)."""

from __future__ import annotations

import base64

from localgem import errors
from localgem.files.wire import File
from localgem.storage.records import FileRecord
from localgem.types.status import Status
from localgem.types.wire import rfc3339


def to_file(record: FileRecord) -> File:
    return File(
        name=f"files/{record.id}",
        display_name=record.display_name,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
        expiration_time=rfc3339(record.expire_time),
        sha256_hash=sha256_base64(record.sha256),
        state=record.state,
        source=record.source,
        # Processing fails only on what the file holds (a PDF without text, too large to parse).
        error=Status(code=errors.RPC_CODES["INVALID_ARGUMENT"], message=record.error) if record.error else None,
    )


def sha256_base64(sha256: str) -> str:
    """``sha256Hash`` as Google sends it: base64 of the hex digest's text."""
    return base64.b64encode(sha256.encode("ascii")).decode("ascii")
