"""models.list and models.get."""

from __future__ import annotations

from localgem.models.catalogue import ModelCatalogue
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.models.wire import ListModelsResponse, Model
from localgem.types.paging import paginate


def to_model(entry: ModelEntry) -> Model:
    config = entry.config
    model = Model(
        name=entry.name,
        base_model_id=entry.id,
        version=config.version,
        display_name=config.display_name or entry.id,
        description=config.description or None,
        input_token_limit=entry.input_token_limit,
        output_token_limit=entry.output_token_limit,
        supported_generation_methods=list(entry.methods),
    )
    if not entry.chats:
        return model
    return model.model_copy(
        update={
            "temperature": config.temperature,
            "max_temperature": config.max_temperature,
            "top_p": config.top_p,
            "top_k": config.top_k,
            "thinking": False,
        }
    )


class ModelService:
    def __init__(self, registry: ModelRegistry, catalogue: ModelCatalogue | None = None) -> None:
        self._registry = registry
        self._catalogue = catalogue

    async def list(self, page_size: int | None, page_token: str | None) -> ListModelsResponse:
        """The settings' models, then the catalogue's as the database holds them now."""
        if self._catalogue is not None:
            await self._catalogue.try_refresh()
        page, next_token = paginate(self._registry.entries(), page_size, page_token, default_size=50, max_size=1000)
        return ListModelsResponse(models=[to_model(e) for e in page], next_page_token=next_token)

    async def get(self, name: str) -> Model:
        """A local id or any name that resolves to one (the answer names the real model)."""
        if self._catalogue is not None:
            await self._catalogue.try_refresh()
        return to_model(self._registry.resolve(name, "getModel"))
