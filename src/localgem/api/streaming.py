"""Google's two framings of streamGenerateContent: SSE (``alt=sse``) and a streamed JSON array."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from localgem import errors
from localgem.api.guard import logged_internal_error
from localgem.types.wire import WireModel

T = TypeVar("T")


async def started(chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """Wait for the first chunk, so that whatever fails before it (a full queue, a deadline)
    is answered with its own HTTP status, as Google does, rather than inside a 200 stream."""
    first = await anext(chunks)

    async def rest() -> AsyncIterator[T]:
        yield first
        async for chunk in chunks:
            yield chunk

    return rest()


def compact_json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _with_error(chunks: AsyncIterator[WireModel]) -> AsyncIterator[dict[str, Any]]:
    """A failure after the stream started becomes a final ``{"error": ...}`` item the SDKs raise on."""
    try:
        async for chunk in chunks:
            yield chunk.to_wire()
    except errors.ApiError as exc:
        yield exc.to_dict()
    except Exception:
        yield logged_internal_error("stream failed")


async def server_sent_events(chunks: AsyncIterator[WireModel]) -> AsyncIterator[bytes]:
    async for item in _with_error(chunks):
        yield b"data: " + compact_json(item) + b"\r\n\r\n"


async def json_array(chunks: AsyncIterator[WireModel]) -> AsyncIterator[bytes]:
    separator = b"["
    async for item in _with_error(chunks):
        yield separator + compact_json(item)
        separator = b",\r\n"
    yield b"[]" if separator == b"[" else b"]"
