"""corpora, corpora.documents, corpora.documents.chunks and corpora.permissions over HTTP. The corpora's
operations are ``operations.routes``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from localgem import errors
from localgem.api.context import flag, project, read_message, require_api_key, services
from localgem.corpora.service import CorpusService
from localgem.corpora.wire import (
    BatchCreateChunksRequest,
    BatchDeleteChunksRequest,
    BatchUpdateChunksRequest,
    Chunk,
    Corpus,
    CorpusDocument,
    QueryRequest,
)
from localgem.types.permissions import Permission

router = APIRouter(dependencies=[Depends(require_api_key)])
CORPUS = "/corpora/{corpus}"
DOCUMENT = CORPUS + "/documents/{document}"
CHUNKS = DOCUMENT + "/chunks"
PageSize = Query(None, alias="pageSize")
PageToken = Query(None, alias="pageToken")
UpdateMask = Query(None, alias="updateMask")


def _service(request: Request) -> CorpusService:
    service = services(request).corpora
    if service is None:
        raise errors.Unimplemented("Corpora are not enabled on this server.")
    return service


@router.post("/corpora")
async def create_corpus(request: Request) -> dict:
    body = await read_message(request, Corpus)
    return (await _service(request).create_corpus(project(request), body)).to_wire()


@router.get("/corpora")
async def list_corpora(request: Request, page_size: int | None = PageSize, page_token: str | None = PageToken) -> dict:
    return (await _service(request).list_corpora(project(request), page_size, page_token)).to_wire()


@router.get(CORPUS)
async def get_corpus(request: Request, corpus: str) -> dict:
    return (await _service(request).get_corpus(project(request), corpus)).to_wire()


@router.patch(CORPUS)
async def update_corpus(request: Request, corpus: str, update_mask: str | None = UpdateMask) -> dict:
    body = await read_message(request, Corpus)
    return (await _service(request).update_corpus(project(request), corpus, body, update_mask)).to_wire()


@router.delete(CORPUS)
async def delete_corpus(request: Request, corpus: str, force: str | None = Query(None)) -> dict:
    await _service(request).delete_corpus(project(request), corpus, flag(force))
    return {}


@router.post(CORPUS + ":query")
async def query_corpus(request: Request, corpus: str) -> dict:
    body = await read_message(request, QueryRequest)
    return (await _service(request).query_corpus(project(request), corpus, body)).to_wire()


@router.post(CORPUS + "/documents")
async def create_document(request: Request, corpus: str) -> dict:
    body = await read_message(request, CorpusDocument)
    return (await _service(request).create_document(project(request), corpus, body)).to_wire()


@router.get(CORPUS + "/documents")
async def list_documents(
    request: Request, corpus: str, page_size: int | None = PageSize, page_token: str | None = PageToken
) -> dict:
    return (await _service(request).list_documents(project(request), corpus, page_size, page_token)).to_wire()


@router.get(DOCUMENT)
async def get_document(request: Request, corpus: str, document: str) -> dict:
    return (await _service(request).get_document(project(request), corpus, document)).to_wire()


@router.patch(DOCUMENT)
async def update_document(request: Request, corpus: str, document: str, update_mask: str | None = UpdateMask) -> dict:
    body = await read_message(request, CorpusDocument)
    updated = await _service(request).update_document(project(request), corpus, document, body, update_mask)
    return updated.to_wire()


@router.delete(DOCUMENT)
async def delete_document(request: Request, corpus: str, document: str, force: str | None = Query(None)) -> dict:
    await _service(request).delete_document(project(request), corpus, document, flag(force))
    return {}


@router.post(DOCUMENT + ":query")
async def query_document(request: Request, corpus: str, document: str) -> dict:
    body = await read_message(request, QueryRequest)
    return (await _service(request).query_document(project(request), corpus, document, body)).to_wire()


@router.post(CHUNKS)
async def create_chunk(request: Request, corpus: str, document: str) -> dict:
    chunk = await read_message(request, Chunk)
    batch = BatchCreateChunksRequest.model_validate({"requests": [{"chunk": chunk.to_wire()}]})
    made = await _service(request).create_chunks(project(request), corpus, document, batch, single=True)
    return made.chunks[0].to_wire() if made.chunks else {}


@router.post(CHUNKS + ":batchCreate")
async def batch_create_chunks(request: Request, corpus: str, document: str) -> dict:
    body = await read_message(request, BatchCreateChunksRequest)
    return (await _service(request).create_chunks(project(request), corpus, document, body)).to_wire()


@router.get(CHUNKS)
async def list_chunks(
    request: Request,
    corpus: str,
    document: str,
    page_size: int | None = PageSize,
    page_token: str | None = PageToken,
) -> dict:
    listed = await _service(request).list_chunks(project(request), corpus, document, page_size, page_token)
    return listed.to_wire()


@router.get(CHUNKS + "/{chunk}")
async def get_chunk(request: Request, corpus: str, document: str, chunk: str) -> dict:
    return (await _service(request).get_chunk(project(request), corpus, document, chunk)).to_wire()


@router.patch(CHUNKS + "/{chunk}")
async def update_chunk(
    request: Request, corpus: str, document: str, chunk: str, update_mask: str | None = UpdateMask
) -> dict:
    body = await read_message(request, Chunk)
    name = f"corpora/{corpus}/documents/{document}/chunks/{chunk}"
    batch = BatchUpdateChunksRequest.model_validate(
        {"requests": [{"chunk": {**body.to_wire(), "name": name}, "updateMask": update_mask}]}
    )
    updated = await _service(request).update_chunks(project(request), corpus, document, batch, single=True)
    return updated.chunks[0].to_wire() if updated.chunks else {}


@router.post(CHUNKS + ":batchUpdate")
async def batch_update_chunks(request: Request, corpus: str, document: str) -> dict:
    body = await read_message(request, BatchUpdateChunksRequest)
    return (await _service(request).update_chunks(project(request), corpus, document, body)).to_wire()


@router.delete(CHUNKS + "/{chunk}")
async def delete_chunk(request: Request, corpus: str, document: str, chunk: str) -> dict:
    await _service(request).delete_chunk(project(request), corpus, document, chunk)
    return {}


@router.post(CHUNKS + ":batchDelete")
async def batch_delete_chunks(request: Request, corpus: str, document: str) -> dict:
    body = await read_message(request, BatchDeleteChunksRequest)
    await _service(request).delete_chunks(project(request), corpus, document, body)
    return {}


@router.post(CORPUS + "/permissions")
async def create_permission(request: Request, corpus: str) -> dict:
    body = await read_message(request, Permission)
    return (await _service(request).create_permission(project(request), corpus, body)).to_wire()


@router.get(CORPUS + "/permissions")
async def list_permissions(
    request: Request, corpus: str, page_size: int | None = PageSize, page_token: str | None = PageToken
) -> dict:
    return (await _service(request).list_permissions(project(request), corpus, page_size, page_token)).to_wire()


@router.get(CORPUS + "/permissions/{permission}")
async def get_permission(request: Request, corpus: str, permission: str) -> dict:
    return (await _service(request).get_permission(project(request), corpus, permission)).to_wire()


@router.patch(CORPUS + "/permissions/{permission}")
async def update_permission(
    request: Request, corpus: str, permission: str, update_mask: str | None = UpdateMask
) -> dict:
    body = await read_message(request, Permission)
    updated = await _service(request).update_permission(project(request), corpus, permission, body, update_mask)
    return updated.to_wire()


@router.delete(CORPUS + "/permissions/{permission}")
async def delete_permission(request: Request, corpus: str, permission: str) -> dict:
    await _service(request).delete_permission(project(request), corpus, permission)
    return {}
