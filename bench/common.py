"""What the bench scripts share: ``localgem serve`` in its own process, as users run it."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time

import httpx

KEY = "bench-key"


def serve(
    data_dir: str,
    ready_path: str = "/readyz",
    src: str | None = None,
    tls: bool = False,
    environ: dict[str, str] | None = None,
    **settings: str,
) -> tuple[str, subprocess.Popen]:
    """Starts the server with ``LOCALGEM_<NAME>=value`` for each setting; returns (url, process).
    ``src``: run the localgem found in that source tree instead of the installed one. ``tls``: HTTPS and
    wss:// with the self-signed certificate ``serve --tls`` makes (see ``certificate``). ``environ``: more
    environment for the server's process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALGEM_")}
    if src is not None:
        env["PYTHONPATH"] = src
    env.update(environ or {})
    env.update(LOCALGEM_DATA_DIR=data_dir, LOCALGEM_API_KEYS=KEY)
    env.update({f"LOCALGEM_{name.upper()}": value for name, value in settings.items()})
    process = subprocess.Popen(
        [sys.executable, "-m", "localgem", "serve", "--port", str(port), *(["--tls"] if tls else [])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scheme = "https" if tls else "http"
    return wait_ready(f"{scheme}://127.0.0.1:{port}", ready_path, process, certificate(data_dir) if tls else None)


def certificate(data_dir: str) -> str:
    """The self-signed certificate ``serve --tls`` keeps in the data dir."""
    return os.path.join(data_dir, "tls", "cert.pem")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(
    url: str, path: str, process: subprocess.Popen, cafile: str | None = None
) -> tuple[str, subprocess.Popen]:
    for _ in range(600):
        try:
            verify = ssl.create_default_context(cafile=cafile) if cafile and os.path.exists(cafile) else True
            if httpx.get(f"{url}{path}", verify=verify).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{url} did not become ready")


def first_token_seconds(url: str, body: dict, model: str = "gemini-2.5-flash") -> float:
    """Seconds from sending a streaming generateContent (``?alt=sse``) to its first chunk with text."""
    start = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{url}/v1beta/models/{model}:streamGenerateContent",
        params={"alt": "sse"},
        json=body,
        headers={"x-goog-api-key": KEY},
        timeout=600,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["candidates"][0]["content"]["parts"][0].get("text"):
                return time.perf_counter() - start
    raise RuntimeError("no text came back")
