"""Batches as JSONL files: requests read from a file uploaded with the Files API (one
``{"key": …, "request": {…}}`` object per line), results written to one (``{"key": …, "response": {…}}``
or ``{"key": …, "error": {…}}`` per line, in input order).

A line that is not such an object, or whose request is invalid, fails that request only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator

import orjson

from localgem import errors
from localgem.storage.records import BatchItem
from localgem.types.json_input import decode_json
from localgem.types.wire import WireModel, parse_message

#: Google's limit on a batch's input file.
MAX_INPUT_BYTES = 2 * 1024**3
MIME_TYPE = "application/jsonl"
#: Requests stored (and results read back) per database round trip.
GROUP = 500


def failed(item: BatchItem, exc: errors.ApiError) -> BatchItem:
    """The request, done, with ``exc`` as its error."""
    # Code and message only: google-genai reads a batch result's error details as strings, not Status details.
    status = {"code": exc.to_status()["code"], "message": exc.message}
    return BatchItem(item.position, item.request, item.metadata, error=json.dumps(status), done=True)


async def request_items(
    chunks: AsyncIterator[bytes], request_type: type[WireModel], file_name: str
) -> AsyncIterator[list[BatchItem]]:
    """The file's requests, in groups of GROUP; blank lines are skipped, bad ones fail alone."""
    group: list[BatchItem] = []
    position = 0
    async for number, line in _numbered_lines(chunks):
        if not line.strip():
            continue
        group.append(_item(position, number, line, request_type, file_name))
        position += 1
        if len(group) == GROUP:
            yield group
            group = []
    if not position:
        raise errors.invalid_field("batch.input_config.file_name", f"{file_name} holds no requests.")
    yield group


def _item(position: int, number: int, line: bytes, request_type: type[WireModel], file_name: str) -> BatchItem:
    where = f"Line {number} of {file_name}"
    text = line.decode("utf-8", errors="replace")
    try:
        entry = decode_json(line)
    except errors.ApiError as exc:
        return failed(BatchItem(position, text), errors.InvalidArgument(f"{where} is not valid JSON: {exc.message}"))
    key = entry.get("key") if isinstance(entry, dict) else None
    metadata = json.dumps({"key": key}) if key is not None else None
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        problem = f'{where} must be a JSON object with a "request" object (and a "key" naming it).'
        return failed(BatchItem(position, text, metadata), errors.InvalidArgument(problem))
    item = BatchItem(position, json.dumps(entry["request"]), metadata)
    try:
        parse_message(request_type, entry["request"])
    except errors.ApiError as exc:
        return failed(item, errors.InvalidArgument(f"{where}: {exc.message}"))
    return item


async def _numbered_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    number = 0
    pending: list[bytes] = []
    async for chunk in chunks:
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            pending.append(chunk)
            continue
        for part in [b"".join([*pending, parts[0]]), *parts[1:-1]]:
            number += 1
            yield number, part
        pending = [parts[-1]]
    if tail := b"".join(pending):
        yield number + 1, tail


async def result_lines(pages: AsyncIterable[list[BatchItem]]) -> AsyncIterator[bytes]:
    """The finished requests as JSONL: each one's metadata (its key) with its response or error."""
    async for page in pages:
        lines = []
        for item in page:
            if not item.done:
                continue  # a cancelled or expired batch's unfinished requests have no result
            line = json.loads(item.metadata) if item.metadata is not None else {}
            if not isinstance(line, dict):
                line = {"metadata": line}
            if item.response is not None:
                line["response"] = orjson.Fragment(item.response)
            else:
                line["error"] = orjson.Fragment(item.error or "{}")
            lines.append(orjson.dumps(line))
        if lines:
            yield b"\n".join(lines) + b"\n"
