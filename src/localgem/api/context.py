"""What routes need from the app: services, the API key check, request bodies, client disconnects."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request, Response
from starlette.requests import ClientDisconnect

from localgem import errors
from localgem.api.versions import API_VERSIONS
from localgem.auth.keys import ApiKeys
from localgem.batches.service import BatchService
from localgem.caching.service import CacheService
from localgem.corpora.service import CorpusService
from localgem.embeddings.service import EmbeddingService
from localgem.file_search.service import FileSearchService
from localgem.file_search.uploads import DocumentUploads
from localgem.files.compose import Files
from localgem.generation.service import GenerationService
from localgem.live.resumption import LiveStates
from localgem.live.tokens import AuthTokens
from localgem.media.compose import Media
from localgem.models.service import ModelService
from localgem.operations.service import OperationService
from localgem.quotas.service import NO_TICKET, Quotas, Ticket
from localgem.speech.hearing import Hearing
from localgem.speech.speaking import Speaking
from localgem.tuning.service import TuningService
from localgem.types.json_input import decode_json
from localgem.types.wire import WireModel, parse_message

M = TypeVar("M", bound=WireModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    keys: ApiKeys
    models: ModelService
    generation: GenerationService
    embeddings: EmbeddingService
    batches: BatchService
    operations: OperationService
    caches: CacheService
    files: Files
    live_states: LiveStates
    auth_tokens: AuthTokens
    max_request_bytes: int
    public_url: str | None = None
    hearing: Hearing | None = None
    speaking: Speaking | None = None
    file_search: FileSearchService | None = None
    corpora: CorpusService | None = None
    document_uploads: DocumentUploads | None = None
    tuning: TuningService | None = None
    media: Media | None = None
    quotas: Quotas | None = None


def services(request: Request) -> Services:
    return request.app.state.services


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: ``x-goog-api-key`` header or ``?key=``, as Google accepts both.
    Records the key's project on the request (see ``project``)."""
    presented = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    request.state.project = await services(request).keys.project_for(presented)
    request.state.api_key = presented  # quotas may be per key


def flag(raw: str | None) -> bool:
    """A boolean query parameter as Google's HTTP rules read it (``force=true``, ``force=True``, ``1``)."""
    return (raw or "").strip().lower() in ("true", "1")


def project(request: Request) -> str:
    """The project of the caller's API key; every stored resource belongs to one."""
    return request.state.project


async def admit(request: Request, family: str, model_id: str, requested: str, tokens: int) -> Ticket:
    """The caller's quotas for one request of ``tokens`` input tokens: a 429 over any, else a ticket that the
    caller releases when the request ends."""
    quotas = services(request).quotas
    if quotas is None or not quotas.enabled:
        return NO_TICKET
    key = getattr(request.state, "api_key", None)
    return await quotas.admit(family, project(request), key, model_id, requested, tokens)


def base_url(request: Request) -> str:
    """How clients reach this server: the configured public URL, else what this request used."""
    return (services(request).public_url or str(request.base_url)).rstrip("/")


def api_version(request: Request) -> str:
    """The version segment the client called (``v1beta``, ``v1``, ``v1alpha``)."""
    for segment in request.url.path.split("/"):
        if segment in API_VERSIONS:
            return segment
    return "v1beta"


def json_response(body: bytes) -> Response:
    """A body already encoded (orjson), so FastAPI does not walk it again: embeddings are large."""
    return Response(body, media_type="application/json")


async def read_message(request: Request, cls: type[M], too_large_hint: str = "") -> M:
    """Read a JSON body without buffering more than the configured limit, then validate it."""
    limit = services(request).max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, too_large_hint)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit, too_large_hint)
    except ClientDisconnect:
        raise errors.Cancelled("The client closed the connection while sending the request.") from None
    return parse_body(bytes(body), cls)


def parse_body(body: bytes, cls: type[M]) -> M:
    """A JSON body → a message; an empty body is an empty message, as with Google."""
    if not body.strip():
        return parse_message(cls, {})
    return parse_message(cls, decode_json(body, single_quotes=True))


def _too_large(limit: int, hint: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"Request payload size exceeds the limit: {limit} bytes.{hint}")


def server_timeout(request: Request) -> float | None:
    """The client's deadline in seconds (google-genai sends ``X-Server-Timeout`` with its timeout)."""
    raw = request.headers.get("x-server-timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if not 0 < value < math.inf:
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


def model_name(request: Request, model: str) -> str:
    """The model a ``/{version}/models/{id}:…`` or ``/{version}/tunedModels/{id}:…`` URL names: a tuned model's
    full name (``tunedModels/{id}``), a model's id as the URL gives it."""
    collection = request.url.path.rsplit("/", 2)[-2]
    return f"tunedModels/{model}" if collection == "tunedModels" else model
