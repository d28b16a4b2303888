"""BidiGenerateContent over WebSocket, and auth_tokens.create.

A session: the client's first frame must be ``setup``; the server answers ``setupComplete`` and then
serves client messages until the client leaves, the session ends (idle, longest duration, shutdown: with
``goAway`` first where Google sends one), or an error closes the socket with a close code and Google's
message as the reason, which both SDKs raise as an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, WebSocket

from localgem import errors
from localgem.api.context import Services, project, read_message, require_api_key
from localgem.api.versions import API_VERSIONS
from localgem.live import wire
from localgem.live.hub import LiveHub
from localgem.live.session import ClientGone, LiveSession, check_setup
from localgem.live.tokens import TokenGrant, is_token

log = logging.getLogger(__name__)

router = APIRouter()
tokens_router = APIRouter(dependencies=[Depends(require_api_key)])

METHODS = ("BidiGenerateContent", "BidiGenerateContentConstrained")
CONSTRAINED = "BidiGenerateContentConstrained"
#: RFC 6455 close codes for Google's statuses (1007 invalid data, 1008 policy, 1011 server error,
#: 1013 try again later).
_CLOSE_CODES = {
    "INVALID_ARGUMENT": 1007,
    "FAILED_PRECONDITION": 1007,
    "OUT_OF_RANGE": 1007,
    "NOT_FOUND": 1008,
    "PERMISSION_DENIED": 1008,
    "UNAUTHENTICATED": 1008,
    "RESOURCE_EXHAUSTED": 1013,
    "UNAVAILABLE": 1013,
}
_SETUP_SECONDS = 30.0  # for the first frame: an unauthenticated socket is not kept longer
_MAX_REASON_BYTES = 123  # a close frame's reason must fit in a control frame


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def close_reason(text: str) -> str:
    raw = text.encode()
    if len(raw) <= _MAX_REASON_BYTES:
        return text
    return raw[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "…"


@router.websocket("/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}")
async def bidi_generate_content(websocket: WebSocket, version: str, method: str) -> None:
    await websocket.accept()
    await LiveConnection(websocket, websocket.app.state.services, websocket.app.state.live).run(version, method)


@tokens_router.post("/auth_tokens")
async def create_auth_token(request: Request) -> dict[str, Any]:
    body = await read_message(request, wire.AuthToken)
    found: Services = request.app.state.services
    caller = project(request)

    async def validate(setup: wire.LiveSetup) -> None:
        if setup.model:
            await check_setup(found.generation, setup, caller, found.speaking)

    return (await found.auth_tokens.create(caller, body, validate)).to_wire()


class LiveConnection:
    def __init__(self, websocket: WebSocket, services: Services, hub: LiveHub) -> None:
        self._ws = websocket
        self._services = services
        self._hub = hub
        self._limits = hub.limits
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._session: LiveSession | None = None
        self._set_up = False  # setupComplete sent: only then may goAway come

    async def run(self, version: str, method: str) -> None:
        try:
            first = await self._first_frame()
            if first is None:
                return
            if version not in API_VERSIONS or method not in METHODS:
                raise errors.NotFound(f"Method {version}.GenerativeService.{method} is not found.")
            credential, token = self._credential()
            # API keys are checked at once; a token once the setup says whether it opens a new session.
            caller = None if token else await self._services.keys.project_for(credential)
            message = self._parse(first)
            if not isinstance(message, wire.LiveSetup):
                raise errors.InvalidArgument("The first message of a Live session must be setup.")
            grant, setup = None, message
            if token:
                if method != CONSTRAINED:
                    raise errors.PermissionDenied(
                        "An ephemeral token works only with BidiGenerateContentConstrained (use api_version v1alpha)."
                    )
                resuming = bool(message.session_resumption and message.session_resumption.handle)
                grant = await self._services.auth_tokens.grant(credential or "", new_session=not resuming)
                caller, setup = grant.project, grant.effective_setup(message)
            assert caller is not None
            with self._hub.admit(caller, self.go_away):
                await self._serve(caller, setup, grant)
        except errors.ApiError as exc:
            await self._close(_CLOSE_CODES.get(exc.status, 1011), exc.message)
        except _Close as close:
            await self._close(close.code, close.reason)
        except ClientGone:
            pass
        except Exception:  # never a dead socket without a reason
            log.exception("a Live session failed")
            await self._close(1011, "An internal error occurred.")
        finally:
            if self._session is not None:
                await self._session.close()

    async def _first_frame(self) -> dict[str, Any] | None:
        try:
            frame = await asyncio.wait_for(self._ws.receive(), min(self._limits.idle_timeout, _SETUP_SECONDS))
        except TimeoutError:
            raise _Close(1008, "No setup message arrived.") from None
        return None if frame["type"] == "websocket.disconnect" else frame

    def _credential(self) -> tuple[str | None, bool]:
        """The presented key or token, and whether it is a token (good for Live only, constrained only)."""
        headers, query = self._ws.headers, self._ws.query_params
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "token ":
            return authorization[6:].strip(), True
        token = query.get("access_token")
        if token:
            return token, True
        key = headers.get("x-goog-api-key") or query.get("key")
        return key, is_token(key)

    def _parse(self, frame: dict[str, Any]) -> wire.ClientMessage:
        raw = frame.get("text")
        if raw is None:
            raw = frame.get("bytes") or b""
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > self._limits.max_message_bytes:
            raise _Close(1009, f"Message too big: {size} bytes (the limit is {self._limits.max_message_bytes}).")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.InvalidArgument(f"Invalid JSON payload received. {exc}") from None
        return wire.client_message(data)

    async def _serve(self, caller: str, setup: wire.LiveSetup, grant: TokenGrant | None) -> None:
        services = self._services
        saved = None
        if setup.session_resumption is not None and setup.session_resumption.handle:
            saved = await services.live_states.resume(caller, setup.session_resumption.handle)
        checked = await check_setup(services.generation, setup, caller, services.speaking)
        session = self._session = LiveSession(
            services.generation,
            services.live_states,
            project=caller,
            setup=setup,
            window=checked.window,
            send=self.send,
            history=saved.history if saved is not None else None,
            session_id=saved.session_id if saved is not None else None,
            speech=checked.speech,
            hearing=services.hearing,
            speaking=services.speaking,
            sees=checked.sees,
        )
        if grant is not None:
            await services.auth_tokens.spend(grant)
        session.warm_up()
        await self.send(wire.setup_complete())
        self._set_up = True
        loop = asyncio.get_running_loop()
        end = loop.time() + self._limits.max_session
        if grant is not None:
            end = min(end, loop.time() + (grant.expire_time - services.auth_tokens.now()).total_seconds())
        go_away_at: float | None = end - self._limits.go_away
        idle_until = loop.time() + self._limits.idle_timeout
        receiving: asyncio.Future[dict[str, Any]] | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(self._ws.receive())
                now = loop.time()
                wake = min(idle_until, end, go_away_at if go_away_at is not None else end)
                done, _ = await asyncio.wait(
                    {receiving, session.ended}, timeout=max(wake - now, 0), return_when=asyncio.FIRST_COMPLETED
                )
                if session.ended in done:
                    raise session.ended.result()
                now = loop.time()
                if receiving in done:
                    frame, receiving = receiving.result(), None
                    if frame["type"] == "websocket.disconnect":
                        return
                    idle_until = now + self._limits.idle_timeout
                    await session.handle(self._parse(frame))
                    continue
                if now >= end:
                    raise _Close(1000, f"The session reached its longest duration ({self._limits.max_session:g} s).")
                if go_away_at is not None and now >= go_away_at:
                    go_away_at = None
                    await self.send(wire.go_away(end - now))
                if now >= idle_until:
                    if session.generating:
                        idle_until = now + self._limits.idle_timeout
                    else:
                        raise _Close(1000, f"The session was idle for {self._limits.idle_timeout:g} s.")
        finally:
            if receiving is not None:
                receiving.cancel()

    async def go_away(self, grace: float) -> None:
        """The server is shutting down: goAway now, close when the current turn is done (or grace ends)."""
        if not self._set_up:  # setupComplete must come first: a session still setting up just ends
            await self._close(1001, "The server is shutting down; connect again.")
            return
        try:
            await self.send(wire.go_away(grace))
        except ClientGone:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while self._session is not None and self._session.generating and loop.time() < until:
            await asyncio.sleep(0.05)
        await self._close(1001, "The server is shutting down; resume the session with its latest handle.")

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            if self._closed:
                raise ClientGone()
            try:
                await self._ws.send_text(orjson.dumps(message).decode())
            except Exception as exc:  # the client went away mid-send (the ASGI server says so in its own way)
                self._closed = True
                raise ClientGone() from exc

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self._ws.close(code, close_reason(reason))
            except Exception:  # already gone
                pass
