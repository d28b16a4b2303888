"""API keys → projects, with Google's answers for a missing and for a wrong key.

Keys come from settings (``api_keys`` act for project ``default``; ``projects`` maps projects to keys),
from the key kept in the data dir, and from the database (``localgem keys create --project P``).
Only digests are held.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from localgem import errors
from localgem.storage.keys import KeyRepository

KEY_FILE = "api-key"
DEFAULT_PROJECT = "default"
_CACHE_SECONDS = 60.0


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "lg-" + secrets.token_urlsafe(24)


class ApiKeys:
    """Answers which project a presented key acts for, or raises Google's error."""

    def __init__(
        self,
        keys: Mapping[str, str],
        repository: KeyRepository | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``keys`` maps each configured key to its project."""
        self._static = {digest(key): project for key, project in keys.items()}
        self._repository = repository
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    async def project_for(self, presented: str | None) -> str:
        if not presented:
            raise errors.PermissionDenied(
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
        key_digest = digest(presented)
        for known, project in self._static.items():
            if hmac.compare_digest(key_digest, known):
                return project
        if (stored := await self._stored(key_digest)) is not None:
            return stored
        message = "API key not valid. Please pass a valid API key."
        raise errors.InvalidArgument(message, [errors.error_info("API_KEY_INVALID"), errors.localized(message)])

    async def _stored(self, key_digest: str) -> str | None:
        if self._repository is None:
            return None
        cached = self._cache.get(key_digest)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        project = await self._repository.project_of(key_digest)
        if project is not None:
            self._cache[key_digest] = (project, self._clock() + _CACHE_SECONDS)
        return project


def configured_keys(api_keys: list[str], projects: Mapping[str, list[str]]) -> dict[str, str]:
    """Settings → {key: project}."""
    keys = {key: DEFAULT_PROJECT for key in api_keys}
    for project, project_keys in projects.items():
        for key in project_keys:
            keys[key] = project
    return keys


def stored_key(data_dir: Path) -> tuple[str, bool]:
    """The key kept in the data dir, created on first use; returns (key, created)."""
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True
