"""Loaded models: each registry entry's engine (and chat template), loaded once, on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from localgem.engines.base import Engine
from localgem.generation.chat_template import FALLBACK_TEMPLATE, ChatTemplate
from localgem.models.registry import ModelEntry
from localgem.one_thread import in_a_thread_of_its_own

EngineFactory = Callable[[ModelEntry], Engine]


@dataclass(frozen=True)
class LoadedModel:
    entry: ModelEntry
    engine: Engine
    template: ChatTemplate

    @property
    def thinks(self) -> bool:
        """It reasons inside ``thinking_tags`` before it answers (see ``generation.thinking``)."""
        config = self.entry.config
        return config.thinking if config.thinking is not None else config.thinking_tags[0] in self.template.source

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
                self._loaded[entry.id] = await in_a_thread_of_its_own("load", self._load, entry)
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
    """Cached contents' computed state, kept by the engine of their model (see ``Engine.keep_prefix``) where
    it can keep one (``capabilities.kept_prefixes``); elsewhere a cache is only its prompt."""

    def __init__(self, pool: EnginePool, forget_unloaded: Callable[[str, str], None]) -> None:
        self._pool = pool
        self._forget_unloaded = forget_unloaded  # (model id, key): what an engine kept for a model not loaded

    async def keep(self, entry: ModelEntry, key: str, prompt: list[int]) -> None:
        engine = (await self._pool.get(entry)).engine
        if engine.capabilities.kept_prefixes:
            await engine.keep_prefix(key, prompt)

    async def drop(self, model_id: str, key: str) -> None:
        loaded = self._pool.loaded().get(model_id)
        if loaded is None:
            self._forget_unloaded(model_id, key)
        elif loaded.engine.capabilities.kept_prefixes:
            await loaded.engine.drop_prefix(key)
