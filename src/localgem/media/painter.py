"""What generation's IMAGE output draws with (``generation.image_output.Painter``): a chat model's image model and
the image worker."""

from __future__ import annotations

from localgem.engines.diffusion.pipelines import Drawing
from localgem.media.studio import Studio
from localgem.models.registry import ModelEntry, ModelRegistry


class ChatPainter:
    def __init__(self, registry: ModelRegistry, studio: Studio) -> None:
        self._registry = registry
        self._studio = studio

    def image_model(self, chat: ModelEntry) -> ModelEntry | None:
        return self._registry.image_model_of(chat)

    def side(self, entry: ModelEntry) -> int:
        return self._studio.side(entry)

    async def draw(self, entry: ModelEntry, job: Drawing) -> list[bytes]:
        return await self._studio.draw(entry, job)
