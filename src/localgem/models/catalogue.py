"""The model catalogue: models added at run time (``localgem models add``, tuning jobs, installed packages), kept
in the database so that every server sharing it serves them, overlaid on the settings' models in the registry.

Settings win: an id the settings (or the builtins) define cannot be added, and a catalogue row that later meets
a settings model with its id is ignored (logged once).

Freshness, without making ``ModelRegistry.resolve`` async: the catalogue re-reads its rows
- at once after its own add or remove (so this server sees its change when the call returns);
- on models.list and models.get;
- before a request whose URL names a model no local id or alias knows (``refresh_for``, from ``RefreshOnMiss``):
  a model added on another server is found on its first use. A name that only matches an alias pattern
  (``gemini-*``, ``gemma-*``) may be a catalogue model this server has not seen yet: it re-reads at most once a
  ``PATTERN_MAX_AGE``;
- every ``REFRESH_SECONDS`` in the background (one of the app's housekeeping duties), which bounds how long a
  removal, or a model named only in a request body (cachedContents, batches), takes to reach the other servers.
Requests never wait long for the database: a read that fails or takes over ``READ_WAIT`` is logged, the request
goes on with the catalogue as last read, and for ``FAILED_READ_PAUSE`` seconds only the background refresh asks.
A model's weights are read once per server, on first use: a changed or removed model's engine stays loaded on
the servers that loaded it until they restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from localgem import errors
from localgem.api.versions import API_VERSIONS
from localgem.models import packaged
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.settings import ModelConfig
from localgem.storage.models import ModelRepository
from localgem.storage.records import ModelRecord

log = logging.getLogger(__name__)

#: Who added a model: the CLI, a tuning job, a package install.
SOURCES = ("cli", "tuned", "package")
REFRESH_SECONDS = 5.0
PATTERN_MAX_AGE = 1.0
READ_WAIT = 2.0
FAILED_READ_PAUSE = 5.0


def config_json(config: ModelConfig) -> str:
    """The config as a settings file would give it: fields left at their defaults are left out, so that a row
    written by a newer localgem (with fields this one lacks) still loads while those fields hold their defaults."""
    return config.model_dump_json(exclude_defaults=True)


def parse_config(value: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    if isinstance(value, ModelConfig):
        return value
    try:
        return ModelConfig.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise errors.InvalidArgument(f"Invalid model: {problems}") from None


class ModelCatalogue:
    def __init__(
        self, repository: ModelRepository, registry: ModelRegistry, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._repository = repository
        self._registry = registry
        self._clock = clock or (lambda: datetime.now(UTC))
        self._fresh_since = -math.inf  # time.monotonic() when the last completed read started
        self._reading: asyncio.Future[None] | None = None
        self._failed_at = -math.inf  # time.monotonic() when try_refresh last failed
        self._rows: list[tuple[str, str, str]] = []  # (id, source, config) of the last read
        self._sources: dict[str, str] = {}
        self._ignored: set[str] = set()  # ids of rows left out (logged when they first are)

    def sources(self) -> dict[str, str]:
        """Id → who added it, for the catalogue models the registry serves."""
        return dict(self._sources)

    async def add(self, config: ModelConfig | Mapping[str, Any], source: str, *, replace: bool = False) -> ModelEntry:
        """Adds a model for every server sharing the database. ``replace``: an entry with its id is replaced
        (a server that has loaded the old weights keeps them until it restarts)."""
        config = parse_config(config)
        if source not in SOURCES:
            raise errors.InvalidArgument(f"Unknown model source {source!r}; one of: {', '.join(SOURCES)}.")
        if self._registry.configured(config.id):
            raise errors.AlreadyExists(
                f"models/{config.id} is defined by the settings (or is a builtin model), which win over the "
                "catalogue. Choose another id."
            )
        entry = ModelEntry.from_config(config)
        _check_weights(entry)
        now = self._clock()
        record = ModelRecord(config.id, source, config_json(config), now, now)
        if replace:
            await self._repository.put(record)
        elif not await self._repository.add(record):
            raise errors.AlreadyExists(f"models/{config.id} is already in the model catalogue.")
        await self.refresh()
        return entry

    async def remove(self, name: str) -> None:
        model_id = name.removeprefix("models/")
        if not await self._repository.remove(model_id):
            if self._registry.configured(model_id):
                raise errors.FailedPrecondition(f"models/{model_id} is defined by the settings; remove it there.")
            raise errors.NotFound(f"models/{model_id} is not in the model catalogue.")
        await self.refresh()

    async def resolve(self, name: str, method: str) -> ModelEntry:
        """``ModelRegistry.resolve`` after ``refresh_for``: finds a model another server has just added."""
        await self.refresh_for(name)
        return self._registry.resolve(name, method)

    async def refresh_for(self, name: str) -> None:
        """Before serving a request for ``name``: re-read the catalogue unless ``name`` is a local id or alias."""
        if self._registry.find_exact(name) is not None:
            return
        if time.monotonic() - self._failed_at < FAILED_READ_PAUSE:
            return  # the database is away: requests are not held up asking it again and again
        await self.try_refresh(0.0 if self._registry.find(name) is None else PATTERN_MAX_AGE)

    async def try_refresh(self, max_age: float = 0.0) -> None:
        """``refresh``, waiting at most ``READ_WAIT`` seconds; a failed or slow read is only logged, and callers
        go on with the catalogue as last read."""
        try:
            async with asyncio.timeout(READ_WAIT):
                await self.refresh(max_age)
        except Exception as exc:  # the database may be briefly away
            self._failed_at = time.monotonic()
            log.warning("could not read the model catalogue: %s", str(exc) or type(exc).__name__)

    async def refresh(self, max_age: float = 0.0) -> None:
        """Re-reads the catalogue, unless a read that started at most ``max_age`` seconds before this call has
        completed. Concurrent callers share one read."""
        asked = time.monotonic()
        while self._fresh_since < asked - max_age:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
                # Waiters that gave up (try_refresh's timeout) leave its failure to no one: mark it seen.
                self._reading.add_done_callback(lambda read: read.cancelled() or read.exception())
            await asyncio.shield(self._reading)

    async def _read(self) -> None:
        started = time.monotonic()
        try:
            records = await self._repository.all()
            rows = [(r.id, r.source, r.config) for r in records]
            if rows != self._rows:
                self._apply(rows)
            self._fresh_since = started
        finally:
            self._reading = None

    def _apply(self, rows: list[tuple[str, str, str]]) -> None:
        configs: list[ModelConfig] = []
        ignored: dict[str, str] = {}
        for model_id, _source, text in rows:
            try:
                config = ModelConfig.model_validate_json(text)
            except ValueError as exc:  # a row this version cannot serve (ValidationError is a ValueError)
                ignored[model_id] = f"its config is invalid: {exc}"
                continue
            if config.id != model_id:
                ignored[model_id] = f"its config names {config.id!r}"
                continue
            configs.append(config)
        for model_id in self._registry.set_catalogue(configs):
            ignored[model_id] = "the settings define a model with its id"
        for model_id, reason in ignored.items():
            if model_id not in self._ignored:
                log.warning("catalogue model models/%s is ignored: %s", model_id, reason)
        self._ignored = set(ignored)
        self._sources = {model_id: source for model_id, source, _ in rows if model_id not in ignored}
        self._rows = rows


def _check_weights(entry: ModelEntry) -> None:
    path = entry.config.path
    if entry.config.base_url is not None:
        return  # served by an upstream engine: asked what it serves when the model is loaded
    if path is not None:
        if not path.is_absolute():
            raise errors.InvalidArgument(
                f"The path of {entry.name} must be absolute (every server sharing the catalogue reads it): {path}"
            )
        entry.checked_path()
    elif entry.config.package not in packaged.PACKAGED_MODELS:
        known = ", ".join(sorted(packaged.PACKAGED_MODELS))
        raise errors.FailedPrecondition(f"Unknown model package {entry.config.package!r}; known: {known}.")


def model_in_path(path: str) -> str | None:
    """The model a ``/{version}/models/{model}:{method}`` URL names; None for other URLs (and for models.get,
    which re-reads the catalogue itself)."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] or parts[1] not in API_VERSIONS or parts[2] != "models":
        return None
    model, colon, _method = parts[3].partition(":")
    return model if model and colon else None


class RefreshOnMiss:
    """ASGI middleware: ``refresh_for`` the model a request's URL names, before the request is served."""

    def __init__(self, app: ASGIApp, catalogue: ModelCatalogue) -> None:
        self.app = app
        self._catalogue = catalogue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (model := model_in_path(scope["path"])) is not None:
            await self._catalogue.refresh_for(model)
        await self.app(scope, receive, send)
