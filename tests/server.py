"""A real uvicorn server on a free loopback port, in a thread, around any app."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from localgem.serving import Server


@dataclass
class RunningServer:
    app: FastAPI
    url: str
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def start_server(
    app: FastAPI, timeout: float = 120, *, certificate: tuple[Path, Path] | None = None, lifespan: str = "on"
) -> RunningServer:
    """``certificate`` (cert, key): serve HTTPS and wss://. ``lifespan="off"``: a second listener on an
    app another server already started."""
    tls = {"ssl_certfile": str(certificate[0]), "ssl_keyfile": str(certificate[1])} if certificate else {}
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan, **tls)
    server = Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if certificate else "http"
    return RunningServer(app, f"{scheme}://127.0.0.1:{port}", server, thread)
