"""models.asyncBatchEmbedContent and batches.get (the Operation of a batch)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request, Response

from localgem.api.context import json_response, project, read_message, require_api_key, services
from localgem.types.batches import AsyncBatchEmbedContentRequest

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/models/{model}:asyncBatchEmbedContent")
async def async_batch_embed_content(request: Request, model: str) -> Response:
    body = await read_message(request, AsyncBatchEmbedContentRequest)
    return json_response(
        orjson.dumps(await services(request).batches.create_embed_batch(model, body, project=project(request)))
    )


@router.get("/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str) -> Response:
    return json_response(orjson.dumps(await services(request).batches.get(project(request), batch_id)))
