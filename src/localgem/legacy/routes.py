"""The PaLM-era methods (text and discuss services), generateAnswer, and the ``dynamic/{id}`` endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from localgem.api.context import (
    model_name,
    project,
    read_message,
    require_api_key,
    server_timeout,
    services,
    unless_disconnected,
)
from localgem.generation import routes as generation_api
from localgem.legacy import dynamic
from localgem.legacy.answer import generate_answer
from localgem.legacy.message import count_message_tokens, generate_message
from localgem.legacy.text import count_text_tokens, generate_text
from localgem.legacy.wire import (
    CountMessageTokensRequest,
    CountTextTokensRequest,
    GenerateAnswerRequest,
    GenerateMessageRequest,
    GenerateTextRequest,
)

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/models/{model}:generateText")
@router.post("/tunedModels/{model}:generateText")
async def generate_text_route(request: Request, model: str) -> dict:
    body = await read_message(request, GenerateTextRequest)
    found = services(request)
    answer = generate_text(
        found.generation, model_name(request, model), body, project=project(request), timeout=server_timeout(request)
    )
    return (await unless_disconnected(request, answer)).to_wire()


@router.post("/models/{model}:countTextTokens")
async def count_text_tokens_route(request: Request, model: str) -> dict:
    body = await read_message(request, CountTextTokensRequest)
    found = services(request)
    return (
        await count_text_tokens(found.generation, found.embeddings, model, body, project=project(request))
    ).to_wire()


@router.post("/models/{model}:generateMessage")
async def generate_message_route(request: Request, model: str) -> dict:
    body = await read_message(request, GenerateMessageRequest)
    found = services(request)
    answer = generate_message(found.generation, model, body, project=project(request), timeout=server_timeout(request))
    return (await unless_disconnected(request, answer)).to_wire()


@router.post("/models/{model}:countMessageTokens")
async def count_message_tokens_route(request: Request, model: str) -> dict:
    body = await read_message(request, CountMessageTokensRequest)
    return (await count_message_tokens(services(request).generation, model, body, project=project(request))).to_wire()


@router.post("/models/{model}:generateAnswer")
async def generate_answer_route(request: Request, model: str) -> dict:
    body = await read_message(request, GenerateAnswerRequest)
    found = services(request)
    answer = generate_answer(
        found.generation, found.corpora, model, body, project=project(request), timeout=server_timeout(request)
    )
    return (await unless_disconnected(request, answer)).to_wire()


@router.post("/dynamic/{dynamic_id}:generateContent")
async def dynamic_generate_content(request: Request, dynamic_id: str) -> dict:
    model = await dynamic.resolve(services(request).models, dynamic_id)
    return await generation_api.generate_content(request, model)


@router.post("/dynamic/{dynamic_id}:streamGenerateContent")
async def dynamic_stream_generate_content(request: Request, dynamic_id: str) -> StreamingResponse:
    model = await dynamic.resolve(services(request).models, dynamic_id)
    return await generation_api.stream_generate_content(request, model)
