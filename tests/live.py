"""Helpers for Live API tests over a raw WebSocket client (the ``websockets`` library, as the SDKs use)."""

from __future__ import annotations

import inspect
import json
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as _connect

from tests.server import RunningServer

MODEL = "models/gemini-live-2.5-flash-preview"
METHOD = "BidiGenerateContent"
CONSTRAINED = "BidiGenerateContentConstrained"


#: websockets 17 wants connect() in a with block unless told this is a direct connection.
_DIRECT = {"legacy": True} if "legacy" in inspect.signature(_connect).parameters else {}


def connect(url: str, **kwargs: Any) -> ClientConnection:
    """A connection the caller closes (or uses in a with block)."""
    return _connect(url, **_DIRECT, **kwargs)


def live_url(server: RunningServer, query: str = "", version: str = "v1beta", method: str = METHOD) -> str:
    url = f"{server.ws_url}/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"
    return f"{url}?{query}" if query else url


def open_session(
    server: RunningServer, key: str, setup: dict[str, Any] | None = None, **kwargs: Any
) -> ClientConnection:
    """Connect, send setup, and check that setupComplete comes first. Answers are written (TEXT) unless
    the setup's generationConfig says otherwise (Google's Live default is AUDIO)."""
    setup = dict(setup or {})
    config = dict(setup.get("generationConfig", {}))
    if "responseModalities" not in config and "response_modalities" not in config:
        config["responseModalities"] = ["TEXT"]
    setup["generationConfig"] = config
    ws = connect(live_url(server, f"key={key}", **kwargs), open_timeout=30)
    ws.send(json.dumps({"setup": {"model": MODEL, **setup}}))
    assert receive(ws) == {"setupComplete": {}}
    return ws


def receive(ws: ClientConnection, timeout: float = 60) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def user_turn(text: str) -> dict[str, Any]:
    return {"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}}


def read_turn(ws: ClientConnection, timeout: float = 120) -> list[dict[str, Any]]:
    """Server messages up to the end of a turn: turnComplete (and the resumption update that may follow
    it is not read), or a toolCall."""
    messages = []
    while True:
        message = receive(ws, timeout)
        messages.append(message)
        if message.get("serverContent", {}).get("turnComplete") or "toolCall" in message:
            return messages


def turn_text(messages: list[dict[str, Any]]) -> str:
    return "".join(
        part.get("text", "")
        for m in messages
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )


def closed(ws: ClientConnection, timeout: float = 30) -> tuple[int, str, list[dict[str, Any]]]:
    """Read until the server closes: its close code and reason, and the messages before it."""
    messages = []
    try:
        while True:
            messages.append(receive(ws, timeout))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "the server did not send a close frame"
        return exc.rcvd.code, exc.rcvd.reason, messages


def golden_exchange(name: str) -> list[tuple[str, dict[str, Any]]]:
    """A recorded Live session (``live_ML_Dev_*.websocket.log``): ``>N json`` lines are the client's frames,
    ``<N json`` (pretty-printed over several lines) Google's, N being the frame's length."""
    from tests.recordings import GOLDEN

    text = (GOLDEN / f"{name}.websocket.log").read_text()
    frames, at = [], 0
    while at < len(text):
        if text[at] in "\n ":
            at += 1
            continue
        direction, space = text[at], text.index(" ", at)
        length = int(text[at + 1 : space])
        body = text[space + 1 : space + 1 + length]
        frames.append((direction, json.loads(body)))
        at = space + 1 + length
    return frames


def kinds(message: dict[str, Any]) -> set[str]:
    """What a server message is: its top-level keys, and serverContent's fields (``serverContent.turnComplete``)."""
    found = set()
    for key, value in message.items():
        found.add(key)
        if key == "serverContent":
            found |= {f"serverContent.{field}" for field in value}
    return found
