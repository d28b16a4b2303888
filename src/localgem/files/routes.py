"""files.get, files.list, files.delete, files.download (the bytes themselves) and files:register (refused)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from localgem import errors
from localgem.api.context import api_version, base_url, project, read_message, require_api_key, services
from localgem.files.service import sha256_base64
from localgem.files.wire import File, ListFilesResponse, RegisterFilesRequest
from localgem.storage.records import FileRecord
from localgem.types.wire import rfc3339

router = APIRouter(dependencies=[Depends(require_api_key)])


def file_to_wire(record: FileRecord, request: Request) -> File:
    uri = f"{base_url(request)}/{api_version(request)}/files/{record.id}"
    return File(
        name=f"files/{record.id}",
        display_name=record.display_name,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
        expiration_time=rfc3339(record.expire_time),
        sha256_hash=sha256_base64(record),
        uri=uri,
        download_uri=f"{uri}:download?alt=media" if record.source == "GENERATED" else None,
        state=record.state,
        source=record.source,
        error={"code": 400, "message": record.error, "status": "INVALID_ARGUMENT"} if record.error else None,
    )


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
    record, chunks = await services(request).files.content(project(request), file_id)
    return StreamingResponse(chunks, media_type=record.mime_type, headers={"Content-Length": str(record.size_bytes)})


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict:
    return file_to_wire(await services(request).files.get(project(request), file_id), request).to_wire()


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict:
    await services(request).files.delete(project(request), file_id)
    return {}


@router.get("/files")
async def list_files(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    records, next_token = await services(request).files.page(project(request), page_size, page_token)
    return ListFilesResponse(
        files=[file_to_wire(record, request) for record in records] or None, next_page_token=next_token
    ).to_wire()
