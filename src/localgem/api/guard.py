"""The last line of defence: no exception ever escapes the app to the ASGI server.

An exception that reaches uvicorn makes it log "Exception in ASGI application" and close the
connection, so the client's next request on that keep-alive connection is reset. Starlette's own
``ServerErrorMiddleware`` answers 500 but then re-raises, with the same effect. This pure ASGI
middleware (``BaseHTTPMiddleware`` would buffer streams) sits under it and ends every request itself:
before the response started, with Google's 500; after, by ending the body cleanly (after a final
``{"error": ...}`` event on an SSE stream), so the connection stays usable.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localgem import errors

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "An internal error has occurred. Please retry or report it with request id {request_id}."


class CatchAll:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _ResponseProgress(send)
        try:
            await self.app(scope, receive, response.send)
        except ClientDisconnect:
            log.debug("client disconnected during %s %s", scope.get("method"), scope.get("path"))
        except Exception:  # noqa: BLE001 - the point of this middleware
            what = f"unhandled error in {scope.get('method')} {scope.get('path')}"
            await response.fail(logged_internal_error(what, scope.get("state", {}).get("request_id")))


class _ResponseProgress:
    """Passes messages on, remembering how far the response got."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False
        self.event_stream = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            self.event_stream = content_type.startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)

    async def fail(self, error: dict[str, Any]) -> None:
        try:
            if not self.started:
                body = json.dumps(error).encode("utf-8")
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await self._send({"type": "http.response.start", "status": 500, "headers": headers})
                await self._send({"type": "http.response.body", "body": body})
            elif not self.finished:
                tail = b"data: " + json.dumps(error, separators=(",", ":")).encode() + b"\r\n\r\n"
                await self._send({"type": "http.response.body", "body": tail if self.event_stream else b""})
        except Exception:  # noqa: BLE001 - e.g. a Content-Length that can no longer be honoured
            log.debug("could not end the response after %s", error["error"]["message"], exc_info=True)


def logged_internal_error(what: str, request_id: str | None = None) -> dict[str, Any]:
    """In an ``except`` block: logs the exception as ``what`` under the request's id (the ``x-request-id`` the
    request log gave it; a new one without), and returns Google's 500 naming that id."""
    request_id = request_id or uuid.uuid4().hex
    log.exception("%s (request %s)", what, request_id)
    return internal_error(request_id)


def internal_error(request_id: str) -> dict[str, Any]:
    """Google's 500, with the id under which the error was logged."""
    exc = errors.Internal(
        INTERNAL_MESSAGE.format(request_id=request_id),
        [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}],
    )
    return exc.to_dict()


class CollapseSlashes:
    """WebSocket paths with repeated slashes are routed as with one: the JS SDK asks for ``//ws/...``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and "//" in scope["path"]:
            scope = dict(scope, path=re.sub("/{2,}", "/", scope["path"]))
            scope.pop("raw_path", None)
        await self.app(scope, receive, send)
