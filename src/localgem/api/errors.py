"""The one place errors become HTTP responses, in Google's shape (unexpected exceptions: see ``guard``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from localgem import errors


def render(exc: errors.ApiError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.http_status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ApiError)
    async def api_error(_request: Request, exc: errors.ApiError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"Invalid value at '{'.'.join(str(p) for p in e['loc'][1:])}': {e['msg']}" for e in exc.errors()]
        return render(errors.InvalidArgument("\n".join(problems)))

    @app.exception_handler(HTTPException)
    async def routing(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):
            return render(
                errors.NotFound(
                    f"The requested URL {request.url.path} was not found on this server (method {request.method})."
                )
            )
        return render(errors.InvalidArgument(str(exc.detail)))
