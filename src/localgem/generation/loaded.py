"""Loaded models: each registry entry's engine (and chat template), loaded once, on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from localgem.engines.base import Engine
from localgem.generation.chat_template import FALLBACK_TEMPLATE, ChatTemplate
from localgem.models.registry import ModelEntry

EngineFactory = Callable[[ModelEntry], Engine]


@dataclass(frozen=True)
class LoadedModel:
    entry: ModelEntry
    engine: Engine
    template: ChatTemplate

    @property
    def context_length(self) -> int:
        return min(self.entry.context_length, self.engine.info.context_length)

    async def close(self) -> None:
        await self.engine.close()


class Closable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


class ModelPool(Generic[T]):
    """Each model, loaded once on first use, off the event loop (loading reads the weights)."""

    def __init__(self, load: Callable[[ModelEntry], T]) -> None:
        self._load = load
        self._loaded: dict[str, T] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, entry: ModelEntry) -> T:
        if (loaded := self._loaded.get(entry.id)) is not None:
            return loaded
        async with self._locks.setdefault(entry.id, asyncio.Lock()):
            if entry.id not in self._loaded:
                self._loaded[entry.id] = await asyncio.to_thread(self._load, entry)
        return self._loaded[entry.id]

    def loaded(self) -> dict[str, T]:
        return dict(self._loaded)

    async def close(self) -> None:
        for loaded in self._loaded.values():
            await loaded.close()
        self._loaded.clear()


class EnginePool(ModelPool[LoadedModel]):
    """Generation engines, each with its chat template."""

    def __init__(self, factory: EngineFactory) -> None:
        def load(entry: ModelEntry) -> LoadedModel:
            engine = factory(entry)
            info = engine.info
            source = entry.config.chat_template or info.chat_template or FALLBACK_TEMPLATE
            template = ChatTemplate(source, bos_token=info.bos_token, eos_token=info.eos_token)
            return LoadedModel(entry, engine, template)

        super().__init__(load)


class KeptPrefixes:
    """Cached contents' KV state, kept by the engine of their model (see ``Engine.keep_prefix``)."""

    def __init__(self, pool: EnginePool, on_disk: Callable[[str, str], Path]) -> None:
        self._pool = pool
        self._on_disk = on_disk  # (model id, key) → the file a model's engine keeps it in

    async def keep(self, entry: ModelEntry, key: str, prompt: list[int]) -> None:
        await (await self._pool.get(entry)).engine.keep_prefix(key, prompt)

    async def drop(self, model_id: str, key: str) -> None:
        loaded = self._pool.loaded().get(model_id)
        if loaded is not None:
            await loaded.engine.drop_prefix(key)
        else:
            self._on_disk(model_id, key).unlink(missing_ok=True)
