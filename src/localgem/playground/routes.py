"""``GET /``: the playground page, and ``GET /playground/{asset}``: its script and style sheet.

The files are package data (``static/``), so they ship in the wheel; nothing is fetched from elsewhere.
The page needs no API key to load: it asks for one and sends it with each API call it makes.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from localgem import errors

router = APIRouter(include_in_schema=False)

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Only this origin's files run and only this origin is called; model output is never markup.
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@router.get("/")
async def page() -> Response:
    return _asset("index.html")


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    if name not in _ASSETS or name == "index.html":
        raise errors.NotFound(f"The playground has no file {name!r}.")
    return _asset(name)


def _asset(name: str) -> Response:
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    headers = {"cache-control": "no-cache", "content-security-policy": _POLICY, "x-content-type-options": "nosniff"}
    return Response(body, media_type=_ASSETS[name], headers=headers)
