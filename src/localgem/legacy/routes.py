"""models.generateText and tunedModels.generateText."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from localgem.api.context import (
    model_name,
    project,
    read_message,
    require_api_key,
    server_timeout,
    services,
    unless_disconnected,
)
from localgem.legacy.text import generate_text
from localgem.legacy.wire import GenerateTextRequest

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
