"""Batch mode: models.batchGenerateContent, models.asyncBatchEmbedContent, and batches get/list/cancel/delete."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from localgem.api.context import json_response, project, read_message, require_api_key, services
from localgem.batches.wire import (
    AsyncBatchEmbedContentRequest,
    BatchGenerateContentRequest,
    EmbedContentBatch,
    GenerateContentBatch,
)

router = APIRouter(dependencies=[Depends(require_api_key)])
#: Google limits inline batches to 20 MB; larger ones go in a file.
INLINE_HINT = (
    " Inline batch requests may total at most this; put a larger batch in a JSONL file uploaded with the "
    "Files API and pass its name as batch.inputConfig.fileName (files up to 2 GB)."
)


@router.post("/models/{model}:asyncBatchEmbedContent")
async def async_batch_embed_content(request: Request, model: str) -> Response:
    body = await read_message(request, AsyncBatchEmbedContentRequest, INLINE_HINT)
    return json_response(
        orjson.dumps(await services(request).batches.create_embed_batch(model, body, project=project(request)))
    )


@router.post("/models/{model}:batchGenerateContent")
async def batch_generate_content(request: Request, model: str) -> Response:
    body = await read_message(request, BatchGenerateContentRequest, INLINE_HINT)
    created = await services(request).batches.create_generate_batch(model, body, project=project(request))
    return json_response(orjson.dumps(created))


@router.get("/batches")
async def list_batches(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> Response:
    return json_response(orjson.dumps(await services(request).batches.list(project(request), page_size, page_token)))


@router.post("/batches/{batch_id}:cancel")
async def cancel_batch(request: Request, batch_id: str) -> dict:
    await services(request).batches.cancel(project(request), batch_id)
    return {}


@router.delete("/batches/{batch_id}")
async def delete_batch(request: Request, batch_id: str) -> dict:
    await services(request).batches.delete(project(request), batch_id)
    return {}


@router.patch("/batches/{batch_id}:updateGenerateContentBatch")
async def update_generate_content_batch(
    request: Request, batch_id: str, update_mask: str | None = Query(None, alias="updateMask")
) -> Response:
    body = await read_message(request, GenerateContentBatch)
    updated = await services(request).batches.update(project(request), batch_id, "generate", body, update_mask)
    return json_response(orjson.dumps(updated))


@router.patch("/batches/{batch_id}:updateEmbedContentBatch")
async def update_embed_content_batch(
    request: Request, batch_id: str, update_mask: str | None = Query(None, alias="updateMask")
) -> Response:
    body = await read_message(request, EmbedContentBatch)
    updated = await services(request).batches.update(project(request), batch_id, "embed", body, update_mask)
    return json_response(orjson.dumps(updated))


@router.get("/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str) -> Response:
    return json_response(orjson.dumps(await services(request).batches.get(project(request), batch_id)))
