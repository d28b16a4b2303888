"""HAProxy (Debian's) on loopback in front of localgem replicas: round robin per request, every response
marked with the replica that served it (``x-localgem-replica``), WebSockets passed through."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPLICA_HEADER = "x-localgem-replica"


def requires_haproxy() -> None:
    if shutil.which("haproxy") is None:
        if os.environ.get("LOCALGEM_REQUIRE_PROXY") == "1":
            raise RuntimeError("LOCALGEM_REQUIRE_PROXY=1 but haproxy is not installed (apt-get install haproxy)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def round_robin(backends: list[str], workdir: Path) -> Iterator[str]:
    """HAProxy balancing each request over ``backends`` (``http://host:port``); yields its URL."""
    requires_haproxy()
    port = _free_port()
    servers = "\n".join(f"  server r{i} {url.removeprefix('http://')} check inter 1s" for i, url in enumerate(backends))
    config = workdir / "haproxy.cfg"
    config.write_text(
        f"""
global
  maxconn 512
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout tunnel 600s
frontend api
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
  http-response set-header {REPLICA_HEADER} %s
{servers}
"""
    )
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
