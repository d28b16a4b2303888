"""tunedModels (create, get, list, patch, delete, transferOwnership) and tunedModels.permissions over HTTP. Their
generation methods are ``generation.routes`` / ``batches.routes`` / ``legacy.routes``; their operations are
``operations.routes``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from localgem import errors
from localgem.api.context import json_response, project, read_message, require_api_key, services
from localgem.tuning.service import TuningService
from localgem.tuning.wire import TransferOwnershipRequest, TunedModel
from localgem.types.permissions import Permission

router = APIRouter(dependencies=[Depends(require_api_key)])
MODEL = "/tunedModels/{model}"
PERMISSION = MODEL + "/permissions/{permission}"
PageSize = Query(None, alias="pageSize")
PageToken = Query(None, alias="pageToken")
UpdateMask = Query(None, alias="updateMask")


def _service(request: Request) -> TuningService:
    service = services(request).tuning
    if service is None:
        raise errors.Unimplemented("Tuned models are not enabled on this server.")
    return service


@router.post("/tunedModels")
async def create_tuned_model(
    request: Request, tuned_model_id: str | None = Query(None, alias="tunedModelId")
) -> Response:
    body = await read_message(request, TunedModel)
    operation = await _service(request).create(project(request), body, tuned_model_id)
    return json_response(orjson.dumps(operation.to_wire()))


@router.get("/tunedModels")
async def list_tuned_models(
    request: Request,
    page_size: int | None = PageSize,
    page_token: str | None = PageToken,
    filter_: str | None = Query(None, alias="filter"),
) -> dict:
    return (await _service(request).list(project(request), page_size, page_token, filter_)).to_wire()


@router.get(MODEL)
async def get_tuned_model(request: Request, model: str) -> dict:
    return (await _service(request).get(project(request), model)).to_wire()


@router.patch(MODEL)
async def update_tuned_model(request: Request, model: str, update_mask: str | None = UpdateMask) -> dict:
    body = await read_message(request, TunedModel)
    return (await _service(request).patch(project(request), model, body, update_mask)).to_wire()


@router.delete(MODEL)
async def delete_tuned_model(request: Request, model: str) -> dict:
    await _service(request).delete(project(request), model)
    return {}


@router.post(MODEL + ":transferOwnership")
async def transfer_ownership(request: Request, model: str) -> dict:
    body = await read_message(request, TransferOwnershipRequest)
    await _service(request).transfer_ownership(project(request), model, body.email_address)
    return {}


@router.post(MODEL + "/permissions")
async def create_permission(request: Request, model: str) -> dict:
    body = await read_message(request, Permission)
    return (await _service(request).create_permission(project(request), model, body)).to_wire()


@router.get(MODEL + "/permissions")
async def list_permissions(
    request: Request, model: str, page_size: int | None = PageSize, page_token: str | None = PageToken
) -> dict:
    return (await _service(request).list_permissions(project(request), model, page_size, page_token)).to_wire()


@router.get(PERMISSION)
async def get_permission(request: Request, model: str, permission: str) -> dict:
    return (await _service(request).get_permission(project(request), model, permission)).to_wire()


@router.patch(PERMISSION)
async def update_permission(
    request: Request, model: str, permission: str, update_mask: str | None = UpdateMask
) -> dict:
    body = await read_message(request, Permission)
    service = _service(request)
    return (await service.update_permission(project(request), model, permission, body, update_mask)).to_wire()


@router.delete(PERMISSION)
async def delete_permission(request: Request, model: str, permission: str) -> dict:
    await _service(request).delete_permission(project(request), model, permission)
    return {}
