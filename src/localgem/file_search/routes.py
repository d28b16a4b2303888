"""fileSearchStores and their documents over HTTP: create, get, list, delete, importFile. Uploads are
``files.upload_routes``; the stores' operations are ``operations.routes``. v1's ``ragStores`` is the same
resource under its former name."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from localgem import errors
from localgem.api.context import flag, project, read_message, require_api_key, services
from localgem.file_search.service import FileSearchService
from localgem.file_search.wire import FileSearchStore, ImportFileRequest

router = APIRouter(dependencies=[Depends(require_api_key)])
_COLLECTIONS = ("fileSearchStores", "ragStores")


def _service(request: Request) -> FileSearchService:
    service = services(request).file_search
    if service is None:
        raise errors.Unimplemented("File Search is not enabled on this server.")
    return service


async def create_store(request: Request) -> dict:
    body = await read_message(request, FileSearchStore)
    return (await _service(request).create_store(project(request), body)).to_wire()


async def list_stores(
    request: Request,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    return (await _service(request).list_stores(project(request), page_size, page_token)).to_wire()


async def get_store(request: Request, store: str) -> dict:
    return (await _service(request).get_store(project(request), store)).to_wire()


async def delete_store(request: Request, store: str, force: str | None = Query(None)) -> dict:
    await _service(request).delete_store(project(request), store, flag(force))
    return {}


async def import_file(request: Request, store: str) -> dict:
    body = await read_message(request, ImportFileRequest)
    return (await _service(request).import_file(project(request), store, body)).to_wire()


async def list_documents(
    request: Request,
    store: str,
    page_size: int | None = Query(None, alias="pageSize"),
    page_token: str | None = Query(None, alias="pageToken"),
) -> dict:
    listed = await _service(request).list_documents(project(request), store, page_size, page_token)
    return listed.to_wire()


async def get_document(request: Request, store: str, document: str) -> dict:
    return (await _service(request).get_document(project(request), store, document)).to_wire()


async def delete_document(request: Request, store: str, document: str, force: str | None = Query(None)) -> dict:
    await _service(request).delete_document(project(request), store, document, flag(force))
    return {}


for _collection in _COLLECTIONS:
    router.add_api_route(f"/{_collection}", create_store, methods=["POST"])
    router.add_api_route(f"/{_collection}", list_stores, methods=["GET"])
    router.add_api_route(f"/{_collection}/{{store}}", get_store, methods=["GET"])
    router.add_api_route(f"/{_collection}/{{store}}", delete_store, methods=["DELETE"])
    router.add_api_route(f"/{_collection}/{{store}}:importFile", import_file, methods=["POST"])
    router.add_api_route(f"/{_collection}/{{store}}/documents", list_documents, methods=["GET"])
    router.add_api_route(f"/{_collection}/{{store}}/documents/{{document}}", get_document, methods=["GET"])
    router.add_api_route(f"/{_collection}/{{store}}/documents/{{document}}", delete_document, methods=["DELETE"])
