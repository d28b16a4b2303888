"""Streaming ``multipart/related`` bodies (metadata part, then media part) without buffering the media."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from localgem import errors


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    field_name: bytes = b""
    value: bytes = b""


class MultipartRelated:
    """``await metadata()`` reads up to the end of the first part; then ``media()`` streams the second."""

    def __init__(self, body: AsyncIterator[bytes], boundary: str, metadata_limit: int) -> None:
        self._body = body
        self._metadata_limit = metadata_limit
        self._parts: list[_Part] = []
        self._pending: list[bytes] = []  # media bytes parsed but not yet handed out
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": lambda: self._parts.append(_Part()),
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_part_data": self._data,
                "on_end": self._end,
            },
        )
        self._first: bytes = b""
        self.media_type: str = ""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._parts[-1].field_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._parts[-1].value += data[start:end]

    def _header_end(self) -> None:
        part = self._parts[-1]
        part.headers[part.field_name.decode("latin-1").lower()] = part.value.decode("latin-1").strip()
        part.field_name, part.value = b"", b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        if len(self._parts) == 1:
            self._first += data[start:end]
            if len(self._first) > self._metadata_limit:
                raise errors.InvalidArgument("The multipart metadata part is too large.")
        elif len(self._parts) == 2:
            self._pending.append(bytes(data[start:end]))
        else:
            raise errors.InvalidArgument("A multipart upload has exactly two parts: metadata, then media.")

    def _end(self) -> None:
        self._ended = True

    async def _feed(self) -> bool:
        chunk = await anext(self._body, None)
        try:
            if chunk is None:
                self._parser.finalize()
                return False
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise errors.InvalidArgument(f"Malformed multipart body: {exc}") from None
        return True

    async def metadata(self) -> bytes:
        while len(self._parts) < 2:
            if not await self._feed():
                raise errors.InvalidArgument("A multipart upload has two parts: metadata, then media.")
        self.media_type = self._parts[1].headers.get("content-type", "")
        return self._first

    async def media(self) -> AsyncIterator[bytes]:
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if self._ended or not await self._feed():
                break
        if not self._ended:
            raise errors.InvalidArgument("The multipart body ended before its closing boundary.")
