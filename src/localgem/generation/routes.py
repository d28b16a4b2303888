"""generateContent, streamGenerateContent and countTokens of models and tuned models (``tunedModels/{id}:…``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from localgem import errors
from localgem.api.context import (
    admit,
    model_name,
    project,
    read_message,
    require_api_key,
    server_timeout,
    services,
    unless_disconnected,
)
from localgem.api.streaming import json_array, server_sent_events, started
from localgem.quotas.service import Ticket
from localgem.types.generation import CountTokensRequest, GenerateContentRequest
from localgem.types.responses import GenerateContentResponse

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/models/{model}:generateContent")
@router.post("/tunedModels/{model}:generateContent")
async def generate_content(request: Request, model: str) -> dict:
    model = model_name(request, model)
    body = await read_message(request, GenerateContentRequest)
    found = services(request)
    plan = await found.generation.plan(model, body, project=project(request), timeout=server_timeout(request))
    ticket = await admit(request, "generate_content", plan.model.entry.id, model, plan.shape.prompt_tokens)
    try:
        response = await unless_disconnected(request, found.generation.generate(plan))
    finally:
        await ticket.release()
    request.state.usage = response.usage_metadata  # for the request log and the metrics
    return response.to_wire()


@router.post("/models/{model}:streamGenerateContent")
@router.post("/tunedModels/{model}:streamGenerateContent")
async def stream_generate_content(request: Request, model: str) -> StreamingResponse:
    model = model_name(request, model)
    body = await read_message(request, GenerateContentRequest)
    found = services(request)
    plan = await found.generation.plan(model, body, project=project(request), timeout=server_timeout(request))
    ticket = await admit(request, "generate_content", plan.model.entry.id, model, plan.shape.prompt_tokens)
    try:
        chunks = await unless_disconnected(
            request, started(_noting_usage(request, found.generation.stream(plan), ticket))
        )
    except BaseException:
        await ticket.release()
        raise
    if _alt(request) == "sse":
        return StreamingResponse(
            server_sent_events(chunks), media_type="text/event-stream", headers={"Content-Disposition": "attachment"}
        )
    return StreamingResponse(json_array(chunks), media_type="application/json")


@router.post("/models/{model}:countTokens")
@router.post("/tunedModels/{model}:countTokens")
async def count_tokens(request: Request, model: str) -> dict:
    model = model_name(request, model)
    body = await read_message(request, CountTokensRequest)
    found = services(request)
    if not model.startswith("tunedModels/") and found.embeddings.embeds(model):
        if body.generate_content_request is not None:
            raise errors.invalid_field(
                "generate_content_request", "An embedding model counts the tokens of contents, not of a request."
            )
        return (await found.embeddings.count_tokens(model, body.contents, project=project(request))).to_wire()
    return (await found.generation.count_tokens(model, body, project=project(request))).to_wire()


async def _noting_usage(
    request: Request, chunks: AsyncIterator[GenerateContentResponse], ticket: Ticket
) -> AsyncIterator[GenerateContentResponse]:
    """The chunks, the last usage seen kept for the request log and the metrics; the quota ticket released
    when the stream ends."""
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                if chunk.usage_metadata is not None:
                    request.state.usage = chunk.usage_metadata
                yield chunk
    finally:
        await ticket.release()


def _alt(request: Request) -> str:
    # GAPIC REST clients send "$alt=json;enum-encoding=int".
    raw = request.query_params.get("alt") or request.query_params.get("$alt") or "json"
    return raw.split(";")[0].strip().lower()
