"""The Model resource."""

from __future__ import annotations

from localgem.types.wire import WireModel


class Model(WireModel):
    """A model served by this server, with Google's Model fields."""

    name: str
    base_model_id: str | None = None
    version: str
    display_name: str | None = None
    description: str | None = None
    input_token_limit: int | None = None
    output_token_limit: int | None = None
    supported_generation_methods: list[str] | None = None
    temperature: float | None = None
    max_temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    thinking: bool | None = None


class ListModelsResponse(WireModel):
    """A page of models."""

    models: list[Model]
    next_page_token: str | None = None
