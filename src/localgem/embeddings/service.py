"""embedContent, batchEmbedContents, countTokens on embedding models, and the PaLM-era embedText methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from localgem import errors
from localgem.embeddings.wire import (
    BatchEmbedContentsRequest,
    BatchEmbedContentsResponse,
    BatchEmbedTextRequest,
    BatchEmbedTextResponse,
    ContentEmbedding,
    EmbedContentRequest,
    EmbedContentResponse,
    Embedding,
    EmbeddingUsageMetadata,
    EmbedTextRequest,
    EmbedTextResponse,
)
from localgem.engines.embedding.engine import EmbeddingBatcher
from localgem.generation.conversation import content_text
from localgem.generation.loaded import ModelPool
from localgem.generation.media import MediaReader
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.types.content import Content
from localgem.types.responses import CountTokensResponse, ModalityTokenCount

#: Google's limit on requests in one batchEmbedContents / batchEmbedText call.
MAX_BATCH = 100

#: Prompt names a sentence-transformers model may define for each of Google's task types, best first
#: (normalised: lower case, "-" and " " as "_"). A model that defines none gets the text as it is.
TASK_PROMPTS: dict[str, tuple[str, ...]] = {
    "RETRIEVAL_QUERY": ("retrieval_query", "query", "search_query"),
    "RETRIEVAL_DOCUMENT": ("retrieval_document", "document", "passage", "search_document"),
    "SEMANTIC_SIMILARITY": ("semantic_similarity", "sts", "similarity"),
    "CLASSIFICATION": ("classification",),
    "CLUSTERING": ("clustering",),
    "QUESTION_ANSWERING": ("question_answering", "query"),
    "FACT_VERIFICATION": ("fact_verification", "query"),
    "CODE_RETRIEVAL_QUERY": ("code_retrieval_query", "code_query", "query"),
}

BatcherFactory = Callable[[ModelEntry], EmbeddingBatcher]


EmbedderPool = ModelPool[EmbeddingBatcher]


@dataclass(frozen=True)
class EmbedInput:
    """One validated input: the exact text the model sees, and the size the caller wants back."""

    text: str
    dimensions: int | None
    truncate: bool
    where: str


@dataclass(frozen=True)
class Embedded:
    vector: np.ndarray  # normalised, at the requested size
    token_count: int


def _succeeded(results: list[Embedded | errors.ApiError]) -> list[Embedded]:
    for result in results:
        if isinstance(result, errors.ApiError):
            raise result
    return results  # type: ignore[return-value]


class EmbeddingService:
    def __init__(self, registry: ModelRegistry, pool: EmbedderPool, media: MediaReader | None = None) -> None:
        self._registry = registry
        self._pool = pool
        self._media = media

    def embeds(self, model: str) -> bool:
        entry = self._registry.find(model)
        return entry is not None and entry.embeds

    async def embed_content(self, model: str, body: EmbedContentRequest, *, project: str) -> EmbedContentResponse:
        entry = self._registry.resolve(model, "embedContent")
        _same_model(body.model, model, "model")
        (result,) = await self.embed_requests(entry, [body], project=project, prefix="")
        return EmbedContentResponse(embedding=_values(result.vector), usage_metadata=_usage([result]))

    async def batch_embed_contents(
        self, model: str, body: BatchEmbedContentsRequest, *, project: str
    ) -> BatchEmbedContentsResponse:
        entry = self._registry.resolve(model, "batchEmbedContents")
        requests = _batch(body.requests, "requests")
        for i, request in enumerate(requests):
            _same_model(request.model, model, f"requests[{i}].model")
        results = await self.embed_requests(entry, requests, project=project, prefix="requests")
        return BatchEmbedContentsResponse(
            embeddings=[_values(r.vector) for r in results], usage_metadata=_usage(results)
        )

    async def embed_requests(
        self, entry: ModelEntry, requests: Sequence[EmbedContentRequest], *, project: str, prefix: str
    ) -> list[Embedded]:
        """Validate every request (any 4xx before any work), then embed them all in one batch."""
        batcher = await self._pool.get(entry)
        inputs = [
            await self._input(entry, batcher, request, project, f"{prefix}[{i}]." if prefix else "")
            for i, request in enumerate(requests)
        ]
        return _succeeded(await self._embed(entry, batcher, inputs))

    async def embed_each(
        self, entry: ModelEntry, requests: Sequence[EmbedContentRequest | errors.ApiError], *, project: str
    ) -> list[Embedded | errors.ApiError]:
        """Batch mode: each request succeeds or fails on its own (an error in, an error out)."""
        batcher = await self._pool.get(entry)
        results: list[Embedded | errors.ApiError | None] = [None] * len(requests)
        inputs, positions = [], []
        for k, request in enumerate(requests):
            try:
                if isinstance(request, errors.ApiError):
                    raise request
                inputs.append(await self._input(entry, batcher, request, project, ""))
                positions.append(k)
            except errors.ApiError as exc:
                results[k] = exc
        for k, result in zip(positions, await self._embed(entry, batcher, inputs), strict=True):
            results[k] = result
        return [r for r in results if r is not None]

    async def embed_text(self, model: str, body: EmbedTextRequest) -> EmbedTextResponse:
        entry = self._registry.resolve(model, "embedText")
        _same_model(body.model, model, "model")
        (result,) = await self._embed_texts(entry, [body.text], ["text"])
        return EmbedTextResponse(embedding=Embedding(value=result.vector))

    async def batch_embed_text(self, model: str, body: BatchEmbedTextRequest) -> BatchEmbedTextResponse:
        entry = self._registry.resolve(model, "batchEmbedText")
        _same_model(body.model, model, "model")
        if body.texts and body.requests:
            raise errors.InvalidArgument("Only one of texts or requests can be set.")
        if body.requests:
            requests = _batch(body.requests, "requests")
            for i, request in enumerate(requests):
                _same_model(request.model, model, f"requests[{i}].model")
            texts, fields = [r.text for r in requests], [f"requests[{i}].text" for i in range(len(requests))]
        else:
            texts = _batch(body.texts, "texts")
            fields = [f"texts[{i}]" for i in range(len(texts))]
        results = await self._embed_texts(entry, texts, fields)
        return BatchEmbedTextResponse(embeddings=[Embedding(value=r.vector) for r in results])

    async def count_tokens(self, model: str, contents: list[Content] | None, *, project: str) -> CountTokensResponse:
        entry = self._registry.resolve(model, "countTokens")
        if not contents:
            raise errors.invalid_field("contents", "* CountTokensRequest.contents: contents is not specified")
        if self._media is not None:
            contents, _ = await self._media.read(project, contents)
        text = "\n".join(content_text(c, f"contents[{i}]") for i, c in enumerate(contents))
        batcher = await self._pool.get(entry)
        (count,) = await batcher.count_tokens([text])
        return CountTokensResponse(
            total_tokens=count, prompt_tokens_details=[ModalityTokenCount(modality="TEXT", token_count=count)]
        )

    async def _embed_texts(self, entry: ModelEntry, texts: Sequence[str | None], fields: list[str]) -> list[Embedded]:
        batcher = await self._pool.get(entry)
        inputs = []
        for text, field in zip(texts, fields, strict=True):
            if not text or not text.strip():
                raise errors.invalid_field(field, f"{field} must not be empty.")
            inputs.append(EmbedInput(text, None, entry.config.truncate, field))
        return _succeeded(await self._embed(entry, batcher, inputs))

    async def _input(
        self, entry: ModelEntry, batcher: EmbeddingBatcher, request: EmbedContentRequest, project: str, where: str
    ) -> EmbedInput:
        config = request.embed_content_config
        task = (config and config.task_type) or request.task_type or "TASK_TYPE_UNSPECIFIED"
        title = (config and config.title) or request.title
        dimensions = (config and config.output_dimensionality) or request.output_dimensionality
        truncate = config.auto_truncate if config and config.auto_truncate is not None else entry.config.truncate
        for option in ("document_ocr", "audio_track_extraction"):
            if config is not None and getattr(config, option):
                raise errors.not_supported(f"{where}embed_content_config.{option}", f"{option} on a text model")
        if title and task != "RETRIEVAL_DOCUMENT":
            raise errors.invalid_field(f"{where}title", "A title is only allowed with task type RETRIEVAL_DOCUMENT.")
        size = batcher.info.dimensions
        if dimensions is not None and not 1 <= dimensions <= size:
            raise errors.invalid_field(
                f"{where}output_dimensionality",
                f"outputDimensionality must be between 1 and {size}, the embedding size of {entry.name}; "
                f"got {dimensions}.",
            )
        if request.content is None:
            raise errors.invalid_field(f"{where}content", f"* EmbedContentRequest.{where}content: content is required")
        contents = [request.content]
        if self._media is not None:
            contents, _ = await self._media.read(project, contents, f"{where}content.")
        text = content_text(contents[0], f"{where}content")
        if not text.strip():
            raise errors.invalid_field(f"{where}content", f"{where}content has no text to embed.")
        if title:
            text = f"{title}\n{text}"
        prompt = _prompt(entry.config.prompts if entry.config.prompts is not None else batcher.info.prompts, task)
        return EmbedInput(prompt + text, dimensions, truncate, where)

    async def _embed(
        self, entry: ModelEntry, batcher: EmbeddingBatcher, inputs: list[EmbedInput]
    ) -> list[Embedded | errors.ApiError]:
        """Embed together; an input over the token limit is cut where allowed, else refused."""
        done = await batcher.embed([i.text for i in inputs], [i.truncate for i in inputs])
        limit = batcher.info.max_tokens
        results: list[Embedded | errors.ApiError] = []
        for item, result in zip(inputs, done, strict=True):
            if result.vector is None:
                field = item.where.rstrip(".") or "content"
                results.append(
                    errors.invalid_field(
                        field,
                        f"The input token count ({result.tokens}) of {field} exceeds the maximum number of tokens "
                        f"allowed ({limit}) by {entry.name}. Shorten it, or set autoTruncate.",
                    )
                )
            else:
                results.append(Embedded(_normalised(result.vector[: item.dimensions]), min(result.tokens, limit)))
        return results


def _prompt(prompts: dict[str, str], task: str) -> str:
    """The prefix the model defines for this task type (see TASK_PROMPTS), or none."""
    if task not in TASK_PROMPTS or not prompts:
        return ""
    by_name = {name.lower().replace("-", "_").replace(" ", "_"): prefix for name, prefix in prompts.items()}
    return next((by_name[name] for name in TASK_PROMPTS[task] if name in by_name), "")


def _normalised(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _values(vector: np.ndarray) -> ContentEmbedding:
    return ContentEmbedding(values=vector)


def _usage(results: list[Embedded]) -> EmbeddingUsageMetadata:
    total = sum(r.token_count for r in results)
    return EmbeddingUsageMetadata(
        prompt_token_count=total, prompt_token_details=[ModalityTokenCount(modality="TEXT", token_count=total)]
    )


def _same_model(named: str | None, model: str, field: str) -> None:
    """Each request of a batch names its model too; it must be the one in the URL, as with Google."""
    if named and named.removeprefix("models/") != model.removeprefix("models/"):
        raise errors.invalid_field(
            field, f"{field} ({named}) does not match the model in the URL (models/{model.removeprefix('models/')})."
        )


def _batch(items: list | None, field: str) -> list:
    if not items:
        raise errors.invalid_field(field, f"{field} must not be empty.")
    if len(items) > MAX_BATCH:
        raise errors.invalid_field(field, f"At most {MAX_BATCH} requests can be in one batch; got {len(items)}.")
    return items
