"""models.list and models.get."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from localgem.api.context import require_api_key, services

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/models")
async def list_models(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    return (await services(request).models.list(page_size, page_token)).to_wire()


@router.get("/models/{model}")
async def get_model(request: Request, model: str) -> dict:
    return (await services(request).models.get(model)).to_wire()
