"""models.predict, models.predictLongRunning, the video operations (``models/*/operations``,
``generatedFiles/*/operations``) and generatedFiles.list/get."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from localgem.api.context import (
    api_version,
    base_url,
    project,
    read_message,
    require_api_key,
    services,
    unless_disconnected,
)
from localgem.media.videos import FileUri
from localgem.media.wire import PredictRequest

router = APIRouter(dependencies=[Depends(require_api_key)])


def file_uri(request: Request) -> FileUri:
    """A video's ``uri``: its file's download link, as this client reached the server (as Google's)."""
    root = f"{base_url(request)}/{api_version(request)}"
    return lambda file_id: f"{root}/files/{file_id}:download?alt=media"


@router.post("/models/{model}:predict")
async def predict(request: Request, model: str) -> dict:
    body = await read_message(request, PredictRequest)
    answer = services(request).media.images.predict(model, body)
    return (await unless_disconnected(request, answer)).to_wire()


@router.post("/models/{model}:predictLongRunning")
async def predict_long_running(request: Request, model: str) -> dict:
    body = await read_message(request, PredictRequest)
    return (await services(request).media.videos.start(project(request), model, body)).to_wire()


@router.get("/models/{model}/operations/{operation}")
@router.get("/generatedFiles/{generated_file}/operations/{operation}")
async def get_operation(request: Request) -> dict:
    name = request.url.path.split("/", 2)[2]
    videos = services(request).media.videos
    return (await videos.get_operation(project(request), name, file_uri(request))).to_wire()


@router.get("/models/{model}/operations")
async def list_operations(
    request: Request,
    model: str,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    videos = services(request).media.videos
    listed = await videos.list_operations(
        project(request), f"models/{model}/operations", page_size, page_token, file_uri(request)
    )
    return listed.to_wire()


@router.post("/models/{model}/operations/{operation}:cancel")
async def cancel_operation(request: Request, model: str, operation: str) -> dict:
    await services(request).media.videos.cancel(project(request), f"models/{model}/operations/{operation}")
    return {}


@router.get("/generatedFiles")
async def list_generated_files(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    return (await services(request).media.videos.generated_files(project(request), page_size, page_token)).to_wire()


@router.get("/generatedFiles/{generated_file}")
async def get_generated_file(request: Request, generated_file: str) -> dict:
    return (await services(request).media.videos.generated_file(project(request), generated_file)).to_wire()
