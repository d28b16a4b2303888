"""Loaded models: each registry entry's engine and chat template, loaded once, on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from localgem.catalog.registry import ModelEntry
from localgem.engines.base import Engine
from localgem.prompting.chat_template import FALLBACK_TEMPLATE, ChatTemplate

EngineFactory = Callable[[ModelEntry], Engine]


@dataclass(frozen=True)
class LoadedModel:
    entry: ModelEntry
    engine: Engine
    template: ChatTemplate

    @property
    def context_length(self) -> int:
        return min(self.entry.context_length, self.engine.info.context_length)


class EnginePool:
    def __init__(self, factory: EngineFactory) -> None:
        self._factory = factory
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, entry: ModelEntry) -> LoadedModel:
        if (loaded := self._loaded.get(entry.id)) is not None:
            return loaded
        async with self._locks.setdefault(entry.id, asyncio.Lock()):
            if entry.id not in self._loaded:
                engine = await asyncio.to_thread(self._factory, entry)  # loading reads the weights: not on the loop
                info = engine.info
                source = entry.config.chat_template or info.chat_template or FALLBACK_TEMPLATE
                template = ChatTemplate(source, bos_token=info.bos_token, eos_token=info.eos_token)
                self._loaded[entry.id] = LoadedModel(entry, engine, template)
        return self._loaded[entry.id]

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._loaded)

    async def close(self) -> None:
        for loaded in self._loaded.values():
            await loaded.engine.close()
        self._loaded.clear()
