"""installableModels over HTTP, for admin keys only: list, get, ``:install`` and ``:remove`` (operations), and
the operations' get. The work is ``models.installs.InstallService``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from localgem import errors
from localgem.api.context import services
from localgem.models.installs import InstallService

MODEL = "/installableModels/{model}"


def _service(request: Request) -> InstallService:
    return request.app.state.installs


async def require_admin_key(request: Request) -> None:
    """An admin key passes; any other key gets Google's answer for it: missing → 403, invalid → 400 (as every
    other method), valid but not an admin's → 403 PERMISSION_DENIED."""
    presented = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if _service(request).is_admin(presented):
        return
    await services(request).keys.project_for(presented)
    raise errors.PermissionDenied(
        "The caller does not have permission: installing and removing models needs an admin key (admin_keys)."
    )


router = APIRouter(dependencies=[Depends(require_admin_key)])


@router.get("/installableModels")
async def list_installable_models(request: Request) -> dict:
    return _service(request).list()


@router.get(MODEL)
async def get_installable_model(request: Request, model: str) -> dict:
    return _service(request).get(model)


@router.post(MODEL + ":install")
async def install_model(request: Request, model: str) -> dict:
    return _service(request).start(model, "install")


@router.post(MODEL + ":remove")
async def remove_model(request: Request, model: str) -> dict:
    return _service(request).start(model, "remove")


@router.get(MODEL + "/operations/{operation}")
async def get_install_operation(request: Request, model: str, operation: str) -> dict:
    return _service(request).operation(f"installableModels/{model}/operations/{operation}")
