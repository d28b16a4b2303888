"""`localgem serve` as a new user runs it: a generated key, a banner with a ready curl line."""

from __future__ import annotations

import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALGEM_")}
    env["LOCALGEM_DATA_DIR"] = str(data_dir)
    return env


def _start_serving(args: list[str], data_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "localgem", "serve", *args],
        env=clean_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "serve exited:\n" + "".join(banner)
        banner.append(line)
        if "Uvicorn running on" in line:  # logged once it listens ("Application startup complete" comes before)
            return process, "".join(banner)
    process.terminate()
    raise AssertionError("serve did not start:\n" + "".join(banner))


def test_serve_generates_a_key_and_prints_a_working_curl_line(tmp_path: Path) -> None:
    port = free_port()
    process, text = _start_serving(["--port", str(port)], tmp_path)
    try:
        banner = text.splitlines()
        key = re.search(r"API key: (lg-\S+)", text).group(1)
        assert (tmp_path / "api-key").read_text().strip() == key
        curl = next(line.strip() for line in banner if line.strip().startswith("curl "))
        assert f"http://127.0.0.1:{port}/v1beta/models/" in curl and key in curl
        result = subprocess.run(shlex.split(curl) + ["-s", "--max-time", "120"], capture_output=True, text=True)
        assert '"candidates"' in result.stdout, result.stdout
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        assert health["loaded"] == ["smollm2-135m-instruct"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    # A second start keeps the same key.
    again = subprocess.run(
        [sys.executable, "-m", "localgem", "models"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "models/smollm2-135m-instruct" in again.stdout and "models/gemma-3-270m" in again.stdout


def test_serve_tls_makes_a_certificate_once_and_the_live_example_runs_over_it(tmp_path: Path) -> None:
    """`serve --tls`: HTTPS and wss:// on one port with a self-signed certificate kept in the data dir; the
    README's Live example (examples/live_chat.py) runs against it with SSL_CERT_FILE, as the banner says."""
    port = free_port()
    cert = tmp_path / "tls" / "cert.pem"
    process, banner = _start_serving(["--tls", "--port", str(port)], tmp_path)
    try:
        key = re.search(r"API key: (lg-\S+)", banner).group(1)
        assert f"https://127.0.0.1:{port}" in banner and f"SSL_CERT_FILE={cert}" in banner and "made now" in banner
        health = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(cafile=str(cert)))
        assert health.status_code == 200
        example = Path(__file__).resolve().parents[2] / "examples" / "live_chat.py"
        env = {**os.environ, "SSL_CERT_FILE": str(cert), "GEMINI_API_KEY": key}
        chat = subprocess.run(
            [sys.executable, str(example), f"https://127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert chat.returncode == 0, chat.stderr
        answers = [line for line in chat.stdout.splitlines() if line and not line.startswith(">")]
        assert chat.stdout.count("> ") == 2 and len(answers) >= 2, chat.stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
    made = cert.read_bytes()
    process, banner = _start_serving(["--tls", "--port", str(port)], tmp_path)
    process.terminate()
    process.wait(timeout=30)
    assert "(kept)" in banner and cert.read_bytes() == made


def test_models_lists_a_gguf_added_by_path(tmp_path: Path) -> None:
    gguf = tmp_path / "My-Model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    result = subprocess.run(
        [sys.executable, "-m", "localgem", "models", "--model", str(gguf)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"models/my-model.q4\tmy-model.q4\t{gguf}" in result.stdout


def test_invalid_settings_exit_with_a_message(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "LOCALGEM_DEFAULT_MODEL": "missing"}
    result = subprocess.run([sys.executable, "-m", "localgem", "models"], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "not configured: missing" in result.stderr
