"""cachedContents: create, get, list, patch (expiration only), delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from localgem.api.context import project, read_message, require_api_key, services
from localgem.caching.wire import CachedContent

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/cachedContents")
async def create_cached_content(request: Request) -> dict:
    body = await read_message(request, CachedContent)
    return (await services(request).caches.create(project(request), body)).to_wire()


@router.get("/cachedContents")
async def list_cached_contents(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    return (await services(request).caches.list(project(request), page_size, page_token)).to_wire()


@router.get("/cachedContents/{cache_id}")
async def get_cached_content(request: Request, cache_id: str) -> dict:
    return (await services(request).caches.get(project(request), cache_id)).to_wire()


@router.patch("/cachedContents/{cache_id}")
async def update_cached_content(
    request: Request, cache_id: str, update_mask: str | None = Query(None, alias="updateMask")
) -> dict:
    body = await read_message(request, CachedContent)
    return (await services(request).caches.update(project(request), cache_id, body, update_mask)).to_wire()


@router.delete("/cachedContents/{cache_id}")
async def delete_cached_content(request: Request, cache_id: str) -> dict:
    await services(request).caches.delete(project(request), cache_id)
    return {}
