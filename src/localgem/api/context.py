"""What routes need from the app: services, the API key check, request bodies, client disconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from localgem import errors
from localgem.auth.keys import ApiKeys
from localgem.services.generation import GenerationService
from localgem.services.models import ModelService
from localgem.types.wire import WireModel, parse_message

M = TypeVar("M", bound=WireModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    keys: ApiKeys
    models: ModelService
    generation: GenerationService
    max_request_bytes: int


def services(request: Request) -> Services:
    return request.app.state.services


def require_api_key(request: Request) -> None:
    """FastAPI dependency: ``x-goog-api-key`` header or ``?key=``, as Google accepts both."""
    presented = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    services(request).keys.check(presented)


async def read_message(request: Request, cls: type[M]) -> M:
    """Read a JSON body without buffering more than the configured limit, then validate it."""
    limit = services(request).max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    if not body.strip():
        return parse_message(cls, {})
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"Invalid JSON payload received. {exc}") from None
    return parse_message(cls, data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _too_large(limit: int) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"Request payload size exceeds the limit: {limit} bytes.")


def server_timeout(request: Request) -> float | None:
    """The client's deadline in seconds (google-genai sends ``X-Server-Timeout`` with its timeout)."""
    raw = request.headers.get("x-server-timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise errors.InvalidArgument(f"Invalid X-Server-Timeout header {raw!r}: a positive number of seconds.")
    return value


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work`` but cancel it as soon as the client goes away, so nothing is computed for nobody."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise errors.Cancelled("The client closed the connection.")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
