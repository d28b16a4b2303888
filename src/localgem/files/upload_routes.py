"""media.upload: ``POST /upload/{version}/files`` (also ``/resumable/upload/...``) in Google's three forms.

- resumable (``X-Goog-Upload-Protocol: resumable``): ``start`` answers with ``x-goog-upload-url``; the
  client then POSTs ``upload`` / ``upload, finalize`` chunks at ``X-Goog-Upload-Offset``, may ``query``
  how much arrived, or ``cancel``. The URL carries an unguessable session secret (``upload_id``) that
  authorizes the chunks: the Python SDK sends them without its API key.
- multipart (``X-Goog-Upload-Protocol: multipart`` or ``uploadType=multipart``): a
  ``multipart/related`` body, JSON ``{"file": {...}}`` then the media.
- media (no protocol): the body is the file, ``Content-Type`` its MIME type.

``POST /upload/{version}/fileSearchStores/{id}:uploadToFileSearchStore`` speaks the same three forms; its
metadata is an UploadToFileSearchStoreRequest, and the finished upload answers with the document's
operation (``file_search.uploads``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from localgem import errors
from localgem.api.context import base_url, parse_body, project, require_api_key, services
from localgem.api.versions import API_VERSIONS
from localgem.file_search.wire import UploadToFileSearchStoreRequest
from localgem.files.multipart import MultipartRelated
from localgem.files.routes import with_urls
from localgem.files.uploads import Proposal, UploadState
from localgem.files.wire import CreateFileRequest, CreateFileResponse, File
from localgem.types.wire import WireModel

router = APIRouter()
_METADATA_LIMIT = 1024 * 1024


@router.post("/upload/{version}/files")
@router.post("/resumable/upload/{version}/files")
async def upload_file(request: Request, version: str) -> Response:
    if version not in API_VERSIONS:
        raise errors.NotFound(f"The requested URL {request.url.path} was not found on this server.")
    if token := request.query_params.get("upload_id"):
        return await _session_command(request, token)
    await require_api_key(request)
    protocol = (request.headers.get("x-goog-upload-protocol") or request.query_params.get("uploadType") or "").lower()
    if protocol == "resumable":
        return await _start(request, version)
    if protocol == "multipart" or request.headers.get("content-type", "").startswith("multipart/"):
        return await _multipart(request)
    length = request.headers.get("content-length", "")
    proposal = Proposal(
        mime_type=request.headers.get("content-type") or None, size_bytes=int(length) if length.isdigit() else None
    )
    file = await services(request).files.uploads.create(project(request), proposal, _body(request))
    return _file_response(file, request)


@router.post("/upload/{version}/fileSearchStores/{store}:uploadToFileSearchStore")
@router.post("/resumable/upload/{version}/fileSearchStores/{store}:uploadToFileSearchStore")
@router.post("/upload/{version}/ragStores/{store}:uploadToFileSearchStore")
async def upload_to_file_search_store(request: Request, version: str, store: str) -> Response:
    if version not in API_VERSIONS:
        raise errors.NotFound(f"The requested URL {request.url.path} was not found on this server.")
    if token := request.query_params.get("upload_id"):
        return await _session_command(request, token)
    await require_api_key(request)
    sink = services(request).document_uploads
    if sink is None:
        raise errors.Unimplemented("File Search is not enabled on this server.")
    protocol = (request.headers.get("x-goog-upload-protocol") or request.query_params.get("uploadType") or "").lower()
    uploads = services(request).files.uploads
    file_name = request.headers.get("x-goog-upload-file-name")
    if protocol == "resumable":
        if _commands(request) != {"start"}:
            raise errors.InvalidArgument("A resumable upload begins with X-Goog-Upload-Command: start.")
        metadata = parse_body(await _read_all(_body(request)), UploadToFileSearchStoreRequest)
        size = _header_size(request)
        proposal = await sink.proposal(project(request), store, metadata, size=size, file_name=file_name)
        token = await uploads.start(project(request), proposal)
        return _session_started(request, f"{request.url.path}?upload_id={quote(token)}&upload_protocol=resumable")
    if protocol == "multipart" or request.headers.get("content-type", "").startswith("multipart/"):
        reader = MultipartRelated(_body(request), _boundary(request.headers.get("content-type", "")), _METADATA_LIMIT)
        metadata = parse_body(await reader.metadata(), UploadToFileSearchStoreRequest)
        proposal = await sink.proposal(
            project(request), store, metadata, size=None, file_name=file_name, media_type=reader.media_type
        )
        return _made(await uploads.create(project(request), proposal, reader.media()))
    length = request.headers.get("content-length", "")
    metadata = UploadToFileSearchStoreRequest(mime_type=request.headers.get("content-type") or None)
    proposal = await sink.proposal(
        project(request), store, metadata, size=int(length) if length.isdigit() else None, file_name=file_name
    )
    return _made(await uploads.create(project(request), proposal, _body(request)))


def _made(result: WireModel) -> Response:
    """What an upload to a store made: the document's operation."""
    return JSONResponse(result.to_wire())


async def _start(request: Request, version: str) -> Response:
    commands = _commands(request)
    if commands != {"start"}:
        raise errors.InvalidArgument("A resumable upload begins with X-Goog-Upload-Command: start.")
    metadata = await _read_metadata(_body(request))
    proposal = _proposal(metadata, request)
    token = await services(request).files.uploads.start(project(request), proposal)
    return _session_started(request, f"/upload/{version}/files?upload_id={quote(token)}&upload_protocol=resumable")


def _session_started(request: Request, path: str) -> Response:
    url = f"{base_url(request)}{path}"
    return Response(
        status_code=200,
        headers={"x-goog-upload-url": url, "x-goog-upload-status": "active", "x-goog-upload-control-url": url},
    )


async def _session_command(request: Request, token: str) -> Response:
    uploads = services(request).files.uploads
    commands = _commands(request)
    if "cancel" in commands:
        await uploads.cancel(token)
        return Response(status_code=200, headers={"x-goog-upload-status": "cancelled"})
    if "query" in commands:
        return _upload_state(await uploads.query(token), request)
    if not commands & {"upload", "finalize"}:
        raise errors.InvalidArgument(
            f"Unknown X-Goog-Upload-Command {request.headers.get('x-goog-upload-command')!r}: "
            "use upload, finalize, query or cancel."
        )
    state = await uploads.upload(token, _offset(request), _body(request), finalize="finalize" in commands)
    return _upload_state(state, request)


def _upload_state(state: UploadState, request: Request) -> Response:
    headers = {"x-goog-upload-size-received": str(state.received)}
    if state.file is None:
        return Response(status_code=200, headers={**headers, "x-goog-upload-status": "active"})
    response = _file_response(state.file, request) if isinstance(state.file, File) else _made(state.file)
    response.headers.update({**headers, "x-goog-upload-status": "final"})
    return response


async def _multipart(request: Request) -> Response:
    content_type = request.headers.get("content-type", "")
    boundary = _boundary(content_type)
    reader = MultipartRelated(_body(request), boundary, _METADATA_LIMIT)
    metadata = _parse_metadata(await reader.metadata())
    proposal = _proposal(metadata, request, media_type=reader.media_type)
    file = await services(request).files.uploads.create(project(request), proposal, reader.media())
    return _file_response(file, request)


def _file_response(file: File, request: Request) -> JSONResponse:
    return JSONResponse(CreateFileResponse(file=with_urls(file, request)).to_wire())


def _commands(request: Request) -> set[str]:
    raw = request.headers.get("x-goog-upload-command", "")
    return {command.strip().lower() for command in raw.split(",") if command.strip()}


def _offset(request: Request) -> int | None:
    raw = request.headers.get("x-goog-upload-offset")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise errors.InvalidArgument(f"Invalid X-Goog-Upload-Offset {raw!r}.")
    return int(raw)


def _boundary(content_type: str) -> str:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    raise errors.InvalidArgument("A multipart upload needs Content-Type: multipart/related; boundary=...")


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise errors.Cancelled("The client closed the connection during the upload.") from None


async def _read_all(body: AsyncIterator[bytes]) -> bytes:
    raw = b""
    async for chunk in body:
        raw += chunk
        if len(raw) > _METADATA_LIMIT:
            raise errors.InvalidArgument("The upload metadata is too large.")
    return raw


async def _read_metadata(body: AsyncIterator[bytes]) -> CreateFileRequest:
    return _parse_metadata(await _read_all(body))


def _header_size(request: Request) -> int | None:
    header_size = request.headers.get("x-goog-upload-header-content-length")
    if header_size is not None and not header_size.strip().isdigit():
        raise errors.InvalidArgument(f"Invalid X-Goog-Upload-Header-Content-Length {header_size!r}.")
    return int(header_size) if header_size is not None else None


def _parse_metadata(raw: bytes) -> CreateFileRequest:
    return parse_body(raw, CreateFileRequest)


def _proposal(metadata: CreateFileRequest, request: Request, media_type: str = "") -> Proposal:
    file = metadata.file
    size = _header_size(request)
    if file is not None and file.size_bytes is not None:
        if size is not None and size != file.size_bytes:
            raise errors.invalid_field(
                "file.size_bytes",
                f"file.size_bytes ({file.size_bytes}) differs from X-Goog-Upload-Header-Content-Length ({size}).",
            )
        size = file.size_bytes
    return Proposal(
        name=file.name if file else None,
        display_name=file.display_name if file else None,
        mime_type=(file.mime_type if file else None)
        or request.headers.get("x-goog-upload-header-content-type")
        or media_type
        or None,
        size_bytes=size,
        file_name=request.headers.get("x-goog-upload-file-name"),
    )
