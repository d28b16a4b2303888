"""``create_app(settings)``: the ASGI application. Nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from localgem import __version__
from localgem.api import generation, health, models
from localgem.api.context import Services
from localgem.api.errors import install_error_handlers
from localgem.auth.keys import ApiKeys, stored_key
from localgem.catalog.registry import ModelEntry, ModelRegistry
from localgem.engines.base import Engine
from localgem.services.engines import EngineFactory, EnginePool
from localgem.services.generation import GenerationService
from localgem.services.models import ModelService
from localgem.settings import Settings

#: google-genai 3.x calls /v1, older SDKs and Google's curl samples /v1beta; all get the same surface.
API_VERSIONS = ("v1beta", "v1", "v1alpha")


def llama_cpp_factory(settings: Settings) -> EngineFactory:
    def load(entry: ModelEntry) -> Engine:
        from localgem.engines.llama_cpp import LlamaCppEngine

        return LlamaCppEngine(
            entry.weights(settings.data_dir),
            context_length=entry.context_length,
            threads=settings.threads,
            slots=settings.slots,
            max_queue=settings.max_queue,
            prefill_chunk=settings.prefill_chunk,
            flash_attention=settings.flash_attention,
        )

    return load


def create_app(settings: Settings, *, engine_factory: EngineFactory | None = None) -> FastAPI:
    registry = ModelRegistry(settings)
    engines = EnginePool(engine_factory or llama_cpp_factory(settings))
    keys = settings.api_keys or [stored_key(settings.data_dir)[0]]
    preload = settings.preload if settings.preload is not None else [settings.default_model]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for model_id in preload:
            await engines.get(registry.resolve(model_id, "load"))
        yield
        await engines.close()

    app = FastAPI(
        title="localgem", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.services = Services(
        keys=ApiKeys(keys),
        models=ModelService(registry),
        generation=GenerationService(registry, engines),
        max_request_bytes=settings.max_request_bytes,
    )
    app.state.engines = engines
    app.state.preload = [registry.resolve(model_id, "load").id for model_id in preload]
    install_error_handlers(app)
    # Browsers running the JS SDK need CORS, and must be able to read the upload headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["x-goog-upload-url", "x-goog-upload-status"],
    )
    for version in API_VERSIONS:
        for module in (models, generation):
            app.include_router(module.router, prefix=f"/{version}")
    app.include_router(health.router)
    return app
