"""Helpers that speak Google's upload protocol with plain httpx, and build small documents."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx


def start_upload(
    base: str,
    key: str,
    size: int | None,
    mime: str = "application/octet-stream",
    file: dict | None = None,
    version: str = "v1beta",
) -> httpx.Response:
    headers = {
        "x-goog-api-key": key,
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Type": mime,
    }
    if size is not None:
        headers["X-Goog-Upload-Header-Content-Length"] = str(size)
    return httpx.post(f"{base}/upload/{version}/files", headers=headers, json={"file": file or {}}, timeout=60)


def send_chunk(url: str, data: bytes, offset: int, *, finalize: bool = False, **kwargs: Any) -> httpx.Response:
    command = "upload, finalize" if finalize else "upload"
    headers = {"X-Goog-Upload-Command": command, "X-Goog-Upload-Offset": str(offset)}
    return httpx.post(url, headers=headers, content=data, timeout=120, **kwargs)


def query_upload(url: str) -> httpx.Response:
    return httpx.post(url, headers={"X-Goog-Upload-Command": "query"}, timeout=60)


def upload_bytes(base: str, key: str, data: bytes, mime: str = "application/octet-stream", **file: Any) -> dict:
    """A whole resumable upload in one chunk; returns the File."""
    started = start_upload(base, key, len(data), mime, file or None)
    assert started.status_code == 200, started.text
    done = send_chunk(started.headers["x-goog-upload-url"], data, 0, finalize=True)
    assert done.status_code == 200, done.text
    assert done.headers["x-goog-upload-status"] == "final"
    return done.json()["file"]


def sha256_hash(data: bytes) -> str:
    """``File.sha256Hash`` as Google encodes it: base64 of the hex digest."""
    return base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode()


def make_pdf(lines: list[str]) -> bytes:
    """A minimal one-page PDF with the given lines of text (Helvetica)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({escape(line)}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out
