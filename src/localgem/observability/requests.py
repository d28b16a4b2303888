"""``RequestLog``: the ASGI middleware that measures every HTTP request and writes one JSON log line for it.

Each request gets a request id (a client's own ``x-request-id``, if it is a sane token, else a new one), sent
back as the ``x-request-id`` header and kept in ``request.state.request_id``. When the response has ended, the
request is counted in the metrics and logged on the ``localgem.requests`` logger as one JSON object: id, HTTP
method, path (never the query string: it may carry ``?key=``), API method, model, project, status, milliseconds
(to the end, and to the first chunk of a stream), bytes in and out, and generation tokens (what the route put in
``request.state.usage``). Prompt text is never logged, unless ``log_request_bodies`` is on (debugging only): then
the first 4 KB of the request body are.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localgem.observability.metrics import Metrics, RequestRecord

log = logging.getLogger("localgem.requests")

_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_VERSIONED = re.compile(r"^/(?:upload/)?(?:v1beta1|v1beta|v1alpha|v1)/(.*)$")
_LOGGED_BODY_BYTES = 4096
_LABEL_CHARS = 64


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics, log_bodies: bool = False) -> None:
        self.app = app
        self._metrics = metrics
        self._log_bodies = log_bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _CLIENT_ID.fullmatch(offered) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "first": None, "in": 0, "out": 0, "stream": False, "body": b""}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen["in"] += len(body)
                if self._log_bodies and len(seen["body"]) < _LOGGED_BODY_BYTES:
                    seen["body"] += body[: _LOGGED_BODY_BYTES - len(seen["body"])]
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                response_headers = list(message.get("headers", []))
                content_type = dict(response_headers).get(b"content-type", b"")
                seen["stream"] = content_type.startswith(b"text/event-stream") or (
                    b"content-length" not in dict(response_headers)
                )
                message = {**message, "headers": [*response_headers, (b"x-request-id", request_id.encode())]}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body and seen["first"] is None:
                    seen["first"] = time.perf_counter() - started
                seen["out"] += len(body)
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        finally:
            self._record(scope, state, seen, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, state: dict, seen: dict, seconds: float, request_id: str) -> None:
        path = scope.get("path", "")
        api_method, model = api_method_of(scope.get("method", ""), path)
        usage = state.get("usage")
        prompt = getattr(usage, "prompt_token_count", None) if usage is not None else None
        output = getattr(usage, "candidates_token_count", None) if usage is not None else None
        status = seen["status"]
        record = RequestRecord(
            method=api_method,
            # No label for names that resolved to nothing (a 429 is a quota of a model that exists).
            model=model if status < 400 or status == 429 else "",
            code=status,
            seconds=seconds,
            first_chunk_seconds=seen["first"] if seen["stream"] else None,
            request_bytes=seen["in"],
            upload=path.startswith("/upload/"),
            prompt_tokens=prompt,
            output_tokens=output,
        )
        self._metrics.observe(record)
        line: dict[str, Any] = {
            "request_id": request_id,
            "http_method": scope.get("method"),
            "path": path,
            "method": api_method,
            "model": model or None,
            "project": state.get("project"),
            "status": status,
            "ms": round(seconds * 1000, 1),
            "first_chunk_ms": round(seen["first"] * 1000, 1) if seen["stream"] and seen["first"] else None,
            "bytes_in": seen["in"],
            "bytes_out": seen["out"],
            "prompt_tokens": prompt,
            "output_tokens": output,
        }
        if self._log_bodies:
            line["body"] = seen["body"].decode("utf-8", "replace")
        log.info(json.dumps({k: v for k, v in line.items() if v is not None}, separators=(",", ":")))


def api_method_of(http_method: str, path: str) -> tuple[str, str]:
    """(API method, model) a path names: ``/v1beta/models/m:generateContent`` → ("generateContent", "m");
    ``/upload/v1beta/files`` → ("files.upload", ""); ``/v1beta/files/abc`` GET → ("files.get", "")."""
    match = _VERSIONED.match(path)
    if match is None:
        return path[:_LABEL_CHARS] or "/", ""
    rest = match.group(1)
    segments = [s for s in rest.split("/") if s]
    model = ""
    if len(segments) >= 2 and segments[0] in ("models", "tunedModels", "dynamic"):
        model = segments[1].split(":", 1)[0][:_LABEL_CHARS]
    if ":" in (segments[-1] if segments else ""):
        return segments[-1].rsplit(":", 1)[1][:_LABEL_CHARS], model
    collection = segments[-2] if len(segments) % 2 == 0 and len(segments) >= 2 else (segments[-1] if segments else "")
    if path.startswith("/upload/"):
        return f"{collection}.upload"[:_LABEL_CHARS], model
    verb = {"GET": "get" if len(segments) % 2 == 0 else "list", "POST": "create", "PATCH": "patch", "DELETE": "delete"}
    return f"{collection}.{verb.get(http_method, http_method.lower())}"[:_LABEL_CHARS], model
