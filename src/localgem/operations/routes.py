"""google.longrunning.Operations over HTTP: every binding of the reference's http rules (v1beta's and v1's) to
get, list, cancel and delete operations, each answered by ``OperationService`` from the operation's name.

A batch is an operation named ``batches/{id}``: batches.get, list, cancel and delete are bindings here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from localgem.api.context import json_response, project, require_api_key, services

router = APIRouter(dependencies=[Depends(require_api_key)])

#: GetOperation.
GET = (
    "batches/{batch}",
    "tunedModels/{tuned_model}/operations/{operation}",
    "generatedFiles/{generated_file}/operations/{operation}",
    "models/{model}/operations/{operation}",
    "corpora/{corpus}/operations/{operation}",
    "fileSearchStores/{store}/operations/{operation}",
    "fileSearchStores/{store}/upload/operations/{operation}",
    "ragStores/{store}/operations/{operation}",  # v1: fileSearchStores' former name
    "ragStores/{store}/upload/operations/{operation}",
)
#: ListOperations, by the collection listed.
LIST = ("batches", "tunedModels/{tuned_model}/operations", "models/{model}/operations", "operations")
#: CancelOperation (``POST /{name}:cancel``).
CANCEL = ("batches/{batch}", "tunedModels/{tuned_model}/operations/{operation}")
#: DeleteOperation.
DELETE = ("batches/{batch}", "operations/{operation:path}")

Endpoint = Callable[..., Awaitable[Response]]


def _name(template: str) -> Callable[[Request], str]:
    """The resource name a request's path gives, e.g. ``tunedModels/a/operations/b``."""
    pattern = template.replace(":path}", "}")
    return lambda request: pattern.format(**request.path_params)


def _get(template: str) -> Endpoint:
    name_of = _name(template)

    async def get_operation(request: Request) -> Response:
        operation = await services(request).operations.get(project(request), name_of(request))
        return json_response(orjson.dumps(operation.to_wire()))

    return get_operation


def _list(template: str) -> Endpoint:
    parent_of = _name(template)

    async def list_operations(
        request: Request,
        page_size: int | None = Query(None, alias="pageSize"),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> Response:
        listed = await services(request).operations.list(project(request), parent_of(request), page_size, page_token)
        return json_response(orjson.dumps(listed.to_wire()))

    return list_operations


def _cancel(template: str) -> Endpoint:
    name_of = _name(template)

    async def cancel_operation(request: Request) -> Response:
        await services(request).operations.cancel(project(request), name_of(request))
        return json_response(b"{}")

    return cancel_operation


def _delete(template: str) -> Endpoint:
    name_of = _name(template)

    async def delete_operation(request: Request) -> Response:
        await services(request).operations.delete(project(request), name_of(request))
        return json_response(b"{}")

    return delete_operation


for _template in GET:
    router.add_api_route(f"/{_template}", _get(_template), methods=["GET"])
for _template in LIST:
    router.add_api_route(f"/{_template}", _list(_template), methods=["GET"])
for _template in CANCEL:
    router.add_api_route(f"/{_template}:cancel", _cancel(_template), methods=["POST"])
for _template in DELETE:
    router.add_api_route(f"/{_template}", _delete(_template), methods=["DELETE"])
