"""``create_app(settings)``: the ASGI application. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from localgem import __version__
from localgem.api import health
from localgem.api.context import Services
from localgem.api.errors import install_error_handlers
from localgem.api.guard import CatchAll, CollapseSlashes
from localgem.api.versions import API_VERSIONS
from localgem.auth.keys import DEFAULT_PROJECT, ApiKeys, configured_keys, stored_key
from localgem.batches import routes as batches_api
from localgem.batches.executors import EmbedExecutor, GenerateExecutor
from localgem.batches.results import BatchResults
from localgem.batches.service import BatchService
from localgem.caching import routes as caching_api
from localgem.caching.service import CacheLimits, CacheService
from localgem.corpora import routes as corpora_api
from localgem.corpora.service import CorpusService
from localgem.embeddings import routes as embeddings_api
from localgem.embeddings.service import EmbedderPool, EmbeddingService
from localgem.engines.base import JsonLimits
from localgem.engines.llama.library import choose_matmul_kernels
from localgem.engines.registry import forget_kept_prefix, model_loader
from localgem.file_search import routes as file_search_api
from localgem.file_search.compose import FileSearch
from localgem.files import routes as files_api
from localgem.files import upload_routes as uploads
from localgem.files.compose import Files
from localgem.files.service import Clock, FileLimits
from localgem.files.sweeper import FileSweeper
from localgem.generation import routes as generation_api
from localgem.generation.code_execution import CodeExecutionTool
from localgem.generation.loaded import EngineFactory, EnginePool, KeptPrefixes
from localgem.generation.media import MediaReader
from localgem.generation.prompts import Prompts
from localgem.generation.service import GenerationService
from localgem.legacy import routes as legacy_api
from localgem.live import routes as live_api
from localgem.live.hub import LiveHub, LiveLimits
from localgem.live.resumption import LiveStates
from localgem.live.tokens import AuthTokens
from localgem.media import routes as media_api
from localgem.media import vertex_routes as vertex_media_api
from localgem.media.compose import Media
from localgem.media.painter import ChatPainter
from localgem.models import install_routes
from localgem.models import routes as models
from localgem.models.catalogue import REFRESH_SECONDS, ModelCatalogue, RefreshOnMiss
from localgem.models.installs import InstallService
from localgem.models.registry import ModelRegistry
from localgem.models.service import ModelService
from localgem.observability import routes as metrics_api
from localgem.observability.metrics import Metrics
from localgem.observability.requests import RequestLog
from localgem.operations import routes as operations_api
from localgem.operations.runner import Runner, Worker
from localgem.operations.service import COLLECTIONS, OperationService
from localgem.operations.webhooks import WebhookService
from localgem.perception import Senses
from localgem.playground import routes as playground
from localgem.quotas.service import Quotas
from localgem.retrieval.index import GuardedIndex
from localgem.retrieval.pg_index import PgChunkIndex
from localgem.retrieval.sqlite_index import SqliteChunkIndex
from localgem.sandbox.runner import Sandbox, SandboxLimits
from localgem.settings import Settings
from localgem.speech.hearing import Hearing
from localgem.speech.loaders import transcriber_loader, voice_loader
from localgem.speech.speaking import Speaking
from localgem.storage.batches import SqlBatchRepository
from localgem.storage.blobs import BlobStore, LocalBlobStore
from localgem.storage.caches import SqlCacheRepository
from localgem.storage.corpora import SqlCorpusRepository
from localgem.storage.database import Database
from localgem.storage.file_search import SqlFileSearchRepository
from localgem.storage.files import SqlFileRepository
from localgem.storage.generated_files import SqlGeneratedFileRepository
from localgem.storage.job_counts import job_counts
from localgem.storage.keys import SqlKeyRepository
from localgem.storage.live import SqlAuthTokenRepository, SqlLiveStateRepository
from localgem.storage.models import SqlModelRepository
from localgem.storage.quotas import SqlQuotaRepository
from localgem.storage.tuned_models import SqlTunedModelRepository
from localgem.storage.uploads import SqlUploadRepository
from localgem.storage.webhooks import SqlWebhookRepository
from localgem.tuning import routes as tuning_api
from localgem.tuning.compose import Tuning
from localgem.tuning.executor import TrainingOptions
from localgem.tuning.service import TuningLimits
from localgem.vision.reading import Reading, reader_loader

log = logging.getLogger(__name__)
#: How long shutdown waits for background steps to end on their own before cancelling them (a step cancelled
#: mid-transaction may leave its SQLite connection, and the write lock, to the garbage collector).
SHUTDOWN_GRACE_SECONDS = 5.0


def create_app(
    settings: Settings, *, engine_factory: EngineFactory | None = None, clock: Clock | None = None
) -> FastAPI:
    """``clock`` (UTC now) drives expiry; tests inject one to travel in time."""
    # Before any model computes: llama.cpp reads its kernel switches once per process.
    choose_matmul_kernels(settings.batch_invariant or not settings.flash_attention)
    registry = ModelRegistry(settings)
    engines = EnginePool(engine_factory or model_loader(settings, "generate"))
    embedders = EmbedderPool(model_loader(settings, "embed"))
    keys = configured_keys(settings.api_keys, settings.projects)
    if not keys:
        keys = {stored_key(settings.data_dir)[0]: DEFAULT_PROJECT}
    preload = settings.preload if settings.preload is not None else [settings.default_model]
    database = Database(settings.database())
    catalogue = ModelCatalogue(SqlModelRepository(database), registry, clock)
    hearing = Hearing(
        transcriber_loader(settings),
        max_inline_seconds=settings.max_inline_audio_seconds,
        max_file_seconds=settings.max_file_audio_seconds,
    )
    reading = Reading(reader_loader() if settings.ocr else None)
    senses = Senses(hearing, reading)
    blobs = _blob_store(settings)
    files = Files.build(
        SqlFileRepository(database),
        SqlUploadRepository(database),
        blobs,
        FileLimits(
            max_file_bytes=settings.max_file_bytes,
            max_project_bytes=settings.max_project_bytes,
            file_ttl=timedelta(seconds=settings.file_ttl_seconds),
            upload_ttl=timedelta(seconds=settings.upload_ttl_seconds),
        ),
        clock or utc_now,
        senses,
    )
    media = MediaReader(files.text, senses)
    speaking = Speaking(settings.voices, voice_loader(settings))
    code_execution = _code_execution(settings)
    prompts = Prompts(engines, media, {code_execution.field: code_execution})
    caches = CacheService(
        SqlCacheRepository(database),
        registry,
        clock or utc_now,
        prompts.tokens,
        KeptPrefixes(engines, lambda model_id, key: forget_kept_prefix(settings, model_id, key)),
        limits=CacheLimits(
            default_ttl=timedelta(seconds=settings.cache_default_ttl_seconds), min_tokens=settings.cache_min_tokens
        ),
    )
    index = _chunk_index(settings, database)
    file_search = FileSearch.build(
        SqlFileSearchRepository(database),
        index,
        blobs,
        files,
        registry,
        embedders,
        clock or utc_now,
        embedding_model=settings.default_embedding_model,
        lease=timedelta(seconds=settings.batch_lease_seconds),
        deadline=timedelta(seconds=settings.batch_deadline_seconds),
    )
    tuning = Tuning.build(
        SqlTunedModelRepository(database),
        registry,
        prompts,
        blobs,
        clock or utc_now,
        options=TrainingOptions(
            data_dir=settings.data_dir,
            threads=settings.tuning_threads or max(1, (os.cpu_count() or 2) // 2),
            niceness=settings.tuning_niceness,
            checkpoint_seconds=settings.tuning_checkpoint_seconds,
            max_example_tokens=settings.tuning_max_example_tokens,
        ),
        limits=TuningLimits(
            min_examples=settings.tuning_min_examples,
            max_examples=settings.tuning_max_examples,
            max_example_tokens=settings.tuning_max_example_tokens,
        ),
        lease=timedelta(seconds=settings.batch_lease_seconds),
        deadline=timedelta(seconds=settings.batch_deadline_seconds),
    )
    drawing = Media.build(settings, SqlGeneratedFileRepository(database), registry, files.service, clock or utc_now)
    generation = GenerationService(
        registry,
        prompts,
        caches,
        json_limits=JsonLimits(settings.json_string_max_chars, settings.json_array_max_items),
        default_max_output_tokens=settings.default_max_output_tokens,
        speaking=speaking,
        served_tools={file_search.tool.field: file_search.tool, code_execution.field: code_execution},
        tuned=tuning.service,
        dynamic_thinking_budget=settings.thinking_dynamic_budget,
        thinking_by_prompt=settings.thinking_by_prompt,
        painter=ChatPainter(registry, drawing.studio),
    )
    embeddings = EmbeddingService(registry, embedders, media)
    live_states = LiveStates(
        SqlLiveStateRepository(database), clock or utc_now, timedelta(seconds=settings.live_handle_ttl_seconds)
    )
    auth_tokens = AuthTokens(SqlAuthTokenRepository(database), clock or utc_now)
    live = LiveHub(
        LiveLimits(
            sessions_per_project=settings.live_max_sessions_per_project,
            idle_timeout=settings.live_idle_timeout_seconds,
            max_session=settings.live_max_session_seconds,
            go_away=settings.live_go_away_seconds,
            max_message_bytes=settings.live_max_message_bytes,
        )
    )
    # Background duties: running operations, settling ended batches (results file, webhooks), delivering webhooks.
    worker = Worker(settings.batch_poll_seconds)
    runner = Runner(
        clock or utc_now,
        lease=timedelta(seconds=settings.batch_lease_seconds),
        deadline=timedelta(seconds=settings.batch_deadline_seconds),
    )
    webhooks = WebhookService(SqlWebhookRepository(database), clock or utc_now, wake=lambda: worker.wake("webhooks"))
    batch_repo = SqlBatchRepository(database)
    batch_results = BatchResults(batch_repo, files.service)
    # 2 × slots: running, and queued in the engine to take each slot that frees.
    generate = GenerateExecutor(batch_repo, batch_results, generation, parallel=2 * settings.slots)
    runner.register("generate", generate, batch_repo)
    runner.register("embed", EmbedExecutor(batch_repo, batch_results, registry, embeddings), batch_repo)
    batches = BatchService(
        batch_repo,
        registry,
        files.service,
        batch_results,
        runner,
        clock or utc_now,
        webhooks=webhooks,
        tuned=tuning.service,
    )
    operations = OperationService()
    operations.serve("batches", batches)
    corpora = CorpusService(
        SqlCorpusRepository(database),
        index,
        registry,
        embedders,
        clock or utc_now,
        f"models/{settings.default_embedding_model}" if settings.default_embedding_model else None,
    )
    for collection in COLLECTIONS:
        if collection.startswith(("fileSearchStores/", "ragStores/")):
            operations.serve(collection, file_search.service)
    operations.serve("tunedModels/*/operations", tuning.operations)
    operations.serve("models/*/operations", drawing.videos)
    operations.serve("generatedFiles/*/operations", drawing.videos)
    worker.add("videos", drawing.step)
    drawing.runner.when_added(lambda: worker.wake("videos"))
    if settings.run_tuning:
        worker.add("tuning", tuning.runner.step)
        tuning.runner.when_added(lambda: worker.wake("tuning"))
    worker.add("operations", runner.step)
    worker.add("ingestion", file_search.runner.step)
    file_search.runner.when_added(lambda: worker.wake("ingestion"))
    worker.add("batch endings", batches.settle)
    worker.add("webhooks", webhooks.step)
    runner.when_added(lambda: worker.wake("operations"))
    runner.when_ended(lambda: worker.wake("batch endings"))
    # Housekeeping runs on every server, batches or not: sweeping expired things, re-reading the model catalogue.
    housekeeping = Worker(settings.sweep_interval_seconds)
    housekeeping.add("sweeping", _sweeping(files.sweeper, caches, live_states, auth_tokens))
    housekeeping.add("catalogue", lambda: catalogue.try_refresh(max_age=REFRESH_SECONDS / 2), every=REFRESH_SECONDS)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await database.migrate()
        await index.open()
        await catalogue.refresh()
        await files.processing.resume()
        housekeeping.start()
        if settings.run_batches:
            worker.start()
        for model_id in preload:
            entry = registry.resolve(model_id, "load")
            if entry.draws:
                await drawing.images.loaded(entry)
            else:
                await (embedders.get(entry) if entry.embeds else engines.get(entry))
        yield
        await _app.state.installs.close()  # an install stops (its pip too) before the database closes
        if code_execution.sandbox is not None:
            await code_execution.sandbox.close()
        await asyncio.gather(worker.stop(SHUTDOWN_GRACE_SECONDS), housekeeping.stop(SHUTDOWN_GRACE_SECONDS))
        webhooks.close()
        drawing.studio.close()
        await files.processing.close()
        await embedders.close()
        await engines.close()
        await index.close()
        await database.close()

    sandbox = code_execution.sandbox
    metrics = Metrics(
        lambda: {model_id: loaded.engine.stats for model_id, loaded in engines.loaded().items()},
        (lambda: sandbox.runs) if sandbox is not None else None,
        lambda: job_counts(database),
    )
    app = FastAPI(
        title="localgem", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.services = Services(
        keys=ApiKeys(keys, SqlKeyRepository(database)),
        models=ModelService(registry, catalogue),
        generation=generation,
        caches=caches,
        embeddings=embeddings,
        batches=batches,
        operations=operations,
        files=files,
        live_states=live_states,
        auth_tokens=auth_tokens,
        max_request_bytes=settings.max_request_bytes,
        public_url=settings.public_url,
        hearing=hearing,
        speaking=speaking,
        file_search=file_search.service,
        corpora=corpora,
        document_uploads=file_search.uploads,
        tuning=tuning.service,
        media=drawing,
        quotas=Quotas(settings.quotas, SqlQuotaRepository(database), settings.quota_minute_seconds),
    )
    app.state.database = database
    app.state.live = live
    app.state.catalogue = catalogue
    app.state.installs = InstallService.build(settings.data_dir, catalogue, settings.admin_keys)
    app.state.webhooks = webhooks
    app.state.runner = runner
    app.state.tuning_runner = tuning.runner
    app.state.media = drawing
    app.state.engines = engines
    app.state.hearing = hearing
    app.state.reading = reading
    app.state.embedders = embedders
    app.state.chunk_index = index
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.preload = [registry.resolve(model_id, "load").id for model_id in preload]
    install_error_handlers(app)
    app.add_middleware(RefreshOnMiss, catalogue=catalogue)
    # Inside CORS, so that its 500s carry CORS headers too.
    app.add_middleware(CatchAll)
    # Outside the catch-all: it sees the status every request really ended with, 500s included.
    app.add_middleware(RequestLog, metrics=metrics, log_bodies=settings.log_request_bodies)
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
    app.add_middleware(CollapseSlashes)
    # Routes are tried in order, a few µs each, and the versioned routers hold hundreds: the upload chunks
    # and health probes, whose paths no other route takes, come first (1.8 ms → 16 µs to find an upload's).
    app.include_router(uploads.router)
    app.include_router(health.router)
    for version in API_VERSIONS:
        for module in (
            media_api,  # before operations_api: video operations carry their file's URL, as this client sees it
            models,
            install_routes,
            generation_api,
            embeddings_api,
            batches_api,
            operations_api,
            caching_api,
            files_api,
            file_search_api,
            corpora_api,
            tuning_api,
            legacy_api,
        ):
            app.include_router(module.router, prefix=f"/{version}")
        app.include_router(live_api.tokens_router, prefix=f"/{version}")
    app.include_router(live_api.router)
    app.include_router(vertex_media_api.router)
    app.include_router(metrics_api.router)
    app.include_router(playground.router)
    return app


def _chunk_index(settings: Settings, database: Database) -> GuardedIndex:
    """File Search's vectors and words: in the server's PostgreSQL (pgvector), or beside its SQLite."""
    if database.dialect == "postgresql":
        return GuardedIndex(PgChunkIndex(database.engine))
    return GuardedIndex(SqliteChunkIndex(settings.data_dir / "index.sqlite"))


def _blob_store(settings: Settings) -> BlobStore:
    """File bytes: on local disk (blob_dir), or in S3 (blob_url), with local copies for path readers in data_dir."""
    if not settings.blob_url:
        return LocalBlobStore(settings.blobs())
    from localgem.storage.s3_blobs import S3BlobStore, S3Location, s3_client

    client = s3_client(
        settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id, settings.s3_secret_access_key
    )
    return S3BlobStore(client, S3Location.parse(settings.blob_url), settings.data_dir / "blob-cache")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _code_execution(settings: Settings) -> CodeExecutionTool:
    """The codeExecution tool, if bubblewrap runs here: the server says at start why not, and the tool answers 400."""
    if not settings.code_execution:
        return CodeExecutionTool(None, "it is turned off (code_execution: false)")
    limits = SandboxLimits(
        cpu_seconds=settings.code_execution_seconds,
        wall_seconds=float(settings.code_execution_seconds),
        memory_bytes=settings.code_execution_memory_mb << 20,
    )
    sandbox = Sandbox(limits, warm=settings.code_execution_warm, concurrency=settings.code_execution_concurrency)
    reason = sandbox.probe()
    if reason is not None:
        log.warning("code execution is unavailable: %s", reason)
        return CodeExecutionTool(None, reason)
    return CodeExecutionTool(sandbox)


def _sweeping(
    sweeper: FileSweeper, caches: CacheService, live_states: LiveStates, auth_tokens: AuthTokens
) -> Callable[[], Awaitable[None]]:
    """A housekeeping duty: remove expired files, uploads, caches, Live states and tokens (a failed sweep is
    logged by the worker and retried next interval)."""

    async def sweep() -> None:
        report = await sweeper.sweep()
        swept_caches = await caches.sweep()
        await live_states.sweep()
        await auth_tokens.sweep()
        if report.files or report.uploads or report.blobs or report.local_copies:
            log.info(
                "swept %s expired files, %s upload sessions, %s stray blobs, %s local copies", *vars(report).values()
            )
        if swept_caches:
            log.info("swept %s expired cached contents", swept_caches)

    return sweep
