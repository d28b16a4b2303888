"""Batch mode: models.batchGenerateContent, models.asyncBatchEmbedContent and the batch updates. A batch is an
Operation: batches get/list/cancel/delete are the operations routes (``operations.routes``)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from localgem.api.context import json_response, model_name, project, read_message, require_api_key, services
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
    created = await services(request).batches.create_embed_batch(model, body, project=project(request))
    return json_response(orjson.dumps(created.to_wire()))


@router.post("/models/{model}:batchGenerateContent")
@router.post("/tunedModels/{model}:batchGenerateContent")
async def batch_generate_content(request: Request, model: str) -> Response:
    model = model_name(request, model)
    body = await read_message(request, BatchGenerateContentRequest, INLINE_HINT)
    created = await services(request).batches.create_generate_batch(model, body, project=project(request))
    return json_response(orjson.dumps(created.to_wire()))


@router.patch("/batches/{batch_id}:updateGenerateContentBatch")
async def update_generate_content_batch(
    request: Request, batch_id: str, update_mask: str | None = Query(None, alias="updateMask")
) -> Response:
    body = await read_message(request, GenerateContentBatch)
    updated = await services(request).batches.update(project(request), batch_id, "generate", body, update_mask)
    return json_response(orjson.dumps(updated.to_wire()))


@router.patch("/batches/{batch_id}:updateEmbedContentBatch")
async def update_embed_content_batch(
    request: Request, batch_id: str, update_mask: str | None = Query(None, alias="updateMask")
) -> Response:
    body = await read_message(request, EmbedContentBatch)
    updated = await services(request).batches.update(project(request), batch_id, "embed", body, update_mask)
    return json_response(orjson.dumps(updated.to_wire()))
