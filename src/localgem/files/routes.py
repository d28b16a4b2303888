"""files.get, files.list, files.delete, files.download (the bytes themselves) and files:register (refused)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from localgem import errors
from localgem.api.context import api_version, base_url, project, read_message, require_api_key, services
from localgem.files.wire import File, ListFilesResponse, RegisterFilesRequest

router = APIRouter(dependencies=[Depends(require_api_key)])


def with_urls(file: File, request: Request) -> File:
    """The file's ``uri`` (what clients put in ``fileData.fileUri``) and, for a generated file, its
    ``downloadUri``: both as this client reached the server."""
    uri = f"{base_url(request)}/{api_version(request)}/{file.name}"
    download_uri = f"{uri}:download?alt=media" if file.source == "GENERATED" else None
    return file.model_copy(update={"uri": uri, "download_uri": download_uri})


@router.post("/files:register")
async def register_files(request: Request) -> dict:
    await read_message(request, RegisterFilesRequest)  # a malformed request is still told what is wrong with it
    raise errors.FailedPrecondition(
        "files:register makes Google Cloud Storage objects (gs://…) usable as files, and localgem has no "
        "Google Cloud Storage. Upload the file's bytes with the Files API instead (client.files.upload, "
        "POST /upload/v1beta/files)."
    )


@router.get("/files/{file_id}:download")
async def download_file(request: Request, file_id: str) -> StreamingResponse:
    file, chunks = await services(request).files.service.content(project(request), file_id)
    return StreamingResponse(chunks, media_type=file.mime_type, headers={"Content-Length": str(file.size_bytes)})


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict:
    return with_urls(await services(request).files.service.get(project(request), file_id), request).to_wire()


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict:
    await services(request).files.service.delete(project(request), file_id)
    return {}


@router.get("/files")
async def list_files(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    files, next_token = await services(request).files.service.page(project(request), page_size, page_token)
    return ListFilesResponse(
        files=[with_urls(file, request) for file in files] or None, next_page_token=next_token
    ).to_wire()
