"""API key checks, with Google's answers for a missing and for a wrong key."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from localgem import errors

KEY_FILE = "api-key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """Holds only digests of the accepted keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one API key is required")
        self._digests = [_digest(k) for k in keys]

    def check(self, presented: str | None) -> None:
        if not presented:
            raise errors.PermissionDenied(
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
        digest = _digest(presented)
        if not any(hmac.compare_digest(digest, known) for known in self._digests):
            message = "API key not valid. Please pass a valid API key."
            raise errors.InvalidArgument(message, [errors.error_info("API_KEY_INVALID"), errors.localized(message)])


def stored_key(data_dir: Path) -> tuple[str, bool]:
    """The key kept in the data dir, created on first use; returns (key, created)."""
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "lg-" + secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True
