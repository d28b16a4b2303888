"""models.embedContent, models.batchEmbedContents, and the PaLM-era models.embedText / batchEmbedText."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from localgem.api.context import (
    json_response,
    project,
    read_message,
    require_api_key,
    services,
    unless_disconnected,
)
from localgem.embeddings.wire import (
    BatchEmbedContentsRequest,
    BatchEmbedTextRequest,
    EmbedContentRequest,
    EmbedTextRequest,
)

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/models/{model}:embedContent")
async def embed_content(request: Request, model: str) -> Response:
    body = await read_message(request, EmbedContentRequest)
    work = services(request).embeddings.embed_content(model, body, project=project(request))
    return json_response((await unless_disconnected(request, work)).to_json())


@router.post("/models/{model}:batchEmbedContents")
async def batch_embed_contents(request: Request, model: str) -> Response:
    body = await read_message(request, BatchEmbedContentsRequest)
    work = services(request).embeddings.batch_embed_contents(model, body, project=project(request))
    return json_response((await unless_disconnected(request, work)).to_json())


@router.post("/models/{model}:embedText")
async def embed_text(request: Request, model: str) -> Response:
    body = await read_message(request, EmbedTextRequest)
    work = services(request).embeddings.embed_text(model, body)
    return json_response((await unless_disconnected(request, work)).to_json())


@router.post("/models/{model}:batchEmbedText")
async def batch_embed_text(request: Request, model: str) -> Response:
    body = await read_message(request, BatchEmbedTextRequest)
    work = services(request).embeddings.batch_embed_text(model, body)
    return json_response((await unless_disconnected(request, work)).to_json())
