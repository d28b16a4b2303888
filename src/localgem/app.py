"""``create_app(settings)``: the ASGI application. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from localgem import __version__
from localgem.api import health
from localgem.api.context import Services
from localgem.api.errors import install_error_handlers
from localgem.api.guard import CatchAll
from localgem.api.versions import API_VERSIONS
from localgem.auth.keys import DEFAULT_PROJECT, ApiKeys, configured_keys, stored_key
from localgem.batches import routes as batches_api
from localgem.batches.service import BatchService
from localgem.caching import routes as caching_api
from localgem.caching.service import CacheLimits, CacheService
from localgem.embeddings import routes as embeddings_api
from localgem.embeddings.service import BatcherFactory, EmbedderPool, EmbeddingService
from localgem.engines.base import Engine
from localgem.engines.embedding.engine import EmbeddingBatcher, load_embedder
from localgem.engines.llama.prefixes import PrefixStore, prefix_file
from localgem.files import routes as files_api
from localgem.files import upload_routes as uploads
from localgem.files.service import Clock, FileLimits, FileService
from localgem.generation import routes as generation_api
from localgem.generation.loaded import EngineFactory, EnginePool, KeptPrefixes
from localgem.generation.schemas import JsonLimits
from localgem.generation.service import GenerationService
from localgem.models import routes as models
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.models.service import ModelService
from localgem.operations.webhooks import WebhookService
from localgem.settings import Settings
from localgem.storage.batches import SqlBatchRepository
from localgem.storage.blobs import LocalBlobStore
from localgem.storage.caches import SqlCacheRepository
from localgem.storage.database import Database
from localgem.storage.files import SqlFileRepository
from localgem.storage.keys import SqlKeyRepository
from localgem.storage.uploads import SqlUploadRepository
from localgem.storage.webhooks import SqlWebhookRepository

log = logging.getLogger(__name__)


def llama_cpp_factory(settings: Settings) -> EngineFactory:
    def load(entry: ModelEntry) -> Engine:
        from localgem.engines.llama.engine import LlamaCppEngine

        return LlamaCppEngine(
            entry.weights(settings.data_dir),
            context_length=entry.context_length,
            threads=settings.threads,
            slots=settings.slots,
            max_queue=settings.max_queue,
            prefill_chunk=settings.prefill_chunk,
            flash_attention=settings.flash_attention,
            niceness=settings.inference_niceness,
            reuse_prefixes=entry.config.reuse_prefixes,
            repetition_stop=settings.repetition_stop_tokens,
            prefixes=PrefixStore(
                kept_prefix_dir(settings, entry.id),
                ram_bytes=settings.cache_ram_bytes,
                disk_bytes=settings.cache_disk_bytes,
            ),
        )

    return load


def kept_prefix_dir(settings: Settings, model_id: str) -> Path:
    return settings.data_dir / "kv" / model_id


def embedder_factory(settings: Settings) -> BatcherFactory:
    def load(entry: ModelEntry) -> EmbeddingBatcher:
        config = entry.config
        embedder = load_embedder(
            entry.weights(settings.data_dir),
            max_tokens=config.input_token_limit or config.context_length,
            batch_size=settings.embedding_batch_size,
            threads=settings.threads,
        )
        return EmbeddingBatcher(embedder, max_texts=settings.embedding_batch_size * 16)

    return load


def create_app(
    settings: Settings, *, engine_factory: EngineFactory | None = None, clock: Clock | None = None
) -> FastAPI:
    """``clock`` (UTC now) drives expiry; tests inject one to travel in time."""
    registry = ModelRegistry(settings)
    engines = EnginePool(engine_factory or llama_cpp_factory(settings))
    embedders = EmbedderPool(embedder_factory(settings))
    keys = configured_keys(settings.api_keys, settings.projects)
    if not keys:
        keys = {stored_key(settings.data_dir)[0]: DEFAULT_PROJECT}
    preload = settings.preload if settings.preload is not None else [settings.default_model]
    database = Database(settings.database())
    files = FileService(
        SqlFileRepository(database),
        SqlUploadRepository(database),
        LocalBlobStore(settings.blobs()),
        FileLimits(
            max_file_bytes=settings.max_file_bytes,
            max_project_bytes=settings.max_project_bytes,
            file_ttl=timedelta(seconds=settings.file_ttl_seconds),
            upload_ttl=timedelta(seconds=settings.upload_ttl_seconds),
        ),
        clock or utc_now,
    )
    generation = GenerationService(
        registry,
        engines,
        files,
        json_limits=JsonLimits(settings.json_string_max_chars, settings.json_array_max_items),
        default_max_output_tokens=settings.default_max_output_tokens,
    )
    caches = CacheService(
        SqlCacheRepository(database),
        registry,
        clock or utc_now,
        generation.prompt_tokens,
        KeptPrefixes(engines, lambda model_id, key: prefix_file(kept_prefix_dir(settings, model_id), key)),
        limits=CacheLimits(
            default_ttl=timedelta(seconds=settings.cache_default_ttl_seconds), min_tokens=settings.cache_min_tokens
        ),
    )
    embeddings = EmbeddingService(registry, embedders, files)
    webhooks = WebhookService(SqlWebhookRepository(database), clock or utc_now)
    batches = BatchService(
        SqlBatchRepository(database),
        registry,
        embeddings,
        clock or utc_now,
        generation=generation,
        caches=caches,
        files=files,
        lease=timedelta(seconds=settings.batch_lease_seconds),
        deadline=timedelta(seconds=settings.batch_deadline_seconds),
        parallel=2 * settings.slots,  # running, and queued in the engine to take each slot that frees
        webhooks=webhooks,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await database.migrate()
        await files.resume_processing()
        sweeper = asyncio.create_task(_sweep_forever(files, caches, settings.sweep_interval_seconds))
        runner = asyncio.create_task(
            batches.run_forever(settings.batch_poll_seconds) if settings.run_batches else asyncio.sleep(0)
        )
        notifier = asyncio.create_task(
            webhooks.run_forever(settings.batch_poll_seconds, [batches.queue_webhooks])
            if settings.run_batches
            else asyncio.sleep(0)
        )
        for model_id in preload:
            entry = registry.resolve(model_id, "load")
            await (embedders.get(entry) if entry.embeds else engines.get(entry))
        yield
        sweeper.cancel()
        runner.cancel()
        notifier.cancel()
        await asyncio.gather(runner, notifier, return_exceptions=True)
        await files.close()
        await embedders.close()
        await engines.close()
        await database.close()

    app = FastAPI(
        title="localgem", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.services = Services(
        keys=ApiKeys(keys, SqlKeyRepository(database)),
        models=ModelService(registry),
        generation=generation,
        caches=caches,
        embeddings=embeddings,
        batches=batches,
        files=files,
        max_request_bytes=settings.max_request_bytes,
        public_url=settings.public_url,
    )
    app.state.database = database
    app.state.webhooks = webhooks
    app.state.engines = engines
    app.state.embedders = embedders
    app.state.preload = [registry.resolve(model_id, "load").id for model_id in preload]
    install_error_handlers(app)
    # Inside CORS, so that its 500s carry CORS headers too.
    app.add_middleware(CatchAll)
    # Browsers running the JS SDK need CORS, and must be able to read the upload headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=[
            "x-goog-upload-url",
            "x-goog-upload-status",
            "x-goog-upload-size-received",
            "x-goog-upload-control-url",
        ],
    )
    for version in API_VERSIONS:
        for module in (models, generation_api, embeddings_api, batches_api, caching_api, files_api):
            app.include_router(module.router, prefix=f"/{version}")
    app.include_router(uploads.router)
    app.include_router(health.router)
    return app


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _sweep_forever(files: FileService, caches: CacheService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            report = await files.sweep()
            swept_caches = await caches.sweep()
        except Exception:  # a failed sweep is retried next interval; it must not end the loop
            log.exception("sweeping expired files and caches failed")
            continue
        if report.files or report.uploads or report.blobs:
            log.info("swept %s expired files, %s upload sessions, %s stray blobs", *vars(report).values())
        if swept_caches:
            log.info("swept %s expired cached contents", swept_caches)
