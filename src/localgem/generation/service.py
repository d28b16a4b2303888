"""generateContent, streamGenerateContent and countTokens."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from localgem import errors
from localgem.caching.service import CacheUse
from localgem.engines.base import (
    Admitted,
    CandidateFinished,
    DeadlineReached,
    GenerationRequest,
    Grammar,
    TextDelta,
)
from localgem.files.service import FileService
from localgem.generation.conversation import attach_files
from localgem.generation.function_calling import ToolPlan, tool_plan
from localgem.generation.loaded import EnginePool, LoadedModel
from localgem.generation.options import generation_options, refuse_unsupported_request
from localgem.generation.prompt_builder import PromptBuilder
from localgem.generation.responses import ResponseShape, StreamChunker, UnaryResponseBuilder
from localgem.generation.schemas import UNBOUNDED, JsonLimits
from localgem.generation.token_counts import token_breakdown
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.types.content import Content
from localgem.types.generation import CountTokensRequest, GenerateContentRequest
from localgem.types.responses import CountTokensResponse, GenerateContentResponse, ModalityTokenCount


@dataclass(frozen=True)
class PreparedGeneration:
    """A validated request, ready to run: every 4xx has been raised before this exists."""

    model: LoadedModel
    request: GenerationRequest
    shape: ResponseShape


class GenerationService:
    def __init__(
        self,
        registry: ModelRegistry,
        engines: EnginePool,
        files: FileService | None = None,
        clock: Callable[[], float] = time.monotonic,
        json_limits: JsonLimits = UNBOUNDED,
        default_max_output_tokens: int = 0,
    ) -> None:
        self._registry = registry
        self._engines = engines
        self._files = files
        self._json_limits = json_limits
        self._default_max_output_tokens = default_max_output_tokens
        self._clock = clock

    async def prepare(
        self,
        model: str,
        body: GenerateContentRequest,
        *,
        project: str,
        timeout: float | None = None,
        cache: CacheUse | None = None,
        background: bool = False,
    ) -> PreparedGeneration:
        """``cache``: the request is ``cache.request`` (the cached contents in front of the caller's)."""
        if cache is not None:
            body = cache.request
        entry = self._registry.resolve(model, "generateContent")
        refuse_unsupported_request(body)
        options = generation_options(
            body.generation_config,
            entry,
            json_limits=self._json_limits,
            default_max_output_tokens=self._default_max_output_tokens,
        )
        plan = tool_plan(body)
        if plan is not None and plan.calls_possible and options.grammar is not None:
            raise errors.invalid_field(
                "generation_config.response_mime_type",
                "Function calling with a response schema or JSON mode is not supported: use one or the other.",
            )
        builder, prompt = await self._prompt(project, entry, body.contents, body.system_instruction, plan=plan)
        loaded = builder.loaded
        grammar = options.grammar
        if plan is not None and plan.calls_possible:
            grammar = plan.grammar("arguments" if loaded.template.supports_tools else "args", self._json_limits)
        room = loaded.context_length - len(prompt)
        if options.max_output_tokens is not None and options.max_output_tokens > room:
            raise errors.invalid_field(
                "generation_config.max_output_tokens",
                f"The input ({len(prompt)} tokens) plus maxOutputTokens ({options.max_output_tokens}) exceeds the "
                f"context window of {entry.name} ({loaded.context_length} tokens).",
            )
        if grammar is not None:
            await _check_grammar(loaded, grammar)
        request = GenerationRequest(
            prompt_tokens=prompt,
            sampling=options.sampling,
            max_tokens=min(options.output_budget, room),
            stop_sequences=options.stop_sequences,
            candidates=options.candidate_count,
            logprobs=options.logprobs,
            deadline=self._clock() + timeout if timeout else None,
            grammar=grammar,
            prefix_key=cache.cache_id if cache is not None else None,
            background=background,
        )
        shape = ResponseShape(
            response_id=secrets.token_urlsafe(16),
            model_version=entry.id,
            prompt_tokens=len(prompt),
            logprobs=options.logprobs is not None,
            function_calling=plan is not None and plan.calls_possible,
            cached_tokens=min(cache.cached_tokens, len(prompt)) if cache is not None else 0,
        )
        return PreparedGeneration(loaded, request, shape)

    async def generate(self, prepared: PreparedGeneration) -> GenerateContentResponse:
        builder = UnaryResponseBuilder(prepared.shape)
        async for event in self._events(prepared):
            builder.add(event)
        return builder.build()

    async def stream(self, prepared: PreparedGeneration) -> AsyncIterator[GenerateContentResponse]:
        chunker = StreamChunker(prepared.shape, prepared.request.candidates)
        async for event in self._events(prepared):
            if (chunk := chunker.add(event)) is not None:
                yield chunk

    async def _events(self, prepared: PreparedGeneration) -> AsyncIterator[TextDelta | CandidateFinished]:
        # aclosing: a consumer that stops early (a client that left) aborts the generation at once.
        async with aclosing(prepared.model.engine.generate(prepared.request)) as events:
            async for event in events:
                if isinstance(event, DeadlineReached):
                    raise errors.DeadlineExceeded(
                        "The request deadline (X-Server-Timeout) passed before generation finished."
                    )
                if isinstance(event, Admitted):
                    prepared.shape.cached_tokens = max(prepared.shape.cached_tokens, event.cached_tokens)
                    continue
                yield event

    async def count_tokens(
        self, model: str, body: CountTokensRequest, *, project: str, cache: CacheUse | None = None
    ) -> CountTokensResponse:
        """``cache``: the generateContentRequest with its cached contents in front."""
        entry = self._registry.resolve(model, "countTokens")
        inner = cache.request if cache is not None else body.generate_content_request
        if inner is not None and body.contents:
            raise errors.InvalidArgument("Set either contents or generateContentRequest, not both.")
        if inner is not None:
            refuse_unsupported_request(inner, prefix="generate_content_request.")
            builder, prompt = await self._prompt(
                project,
                entry,
                inner.contents,
                inner.system_instruction,
                prefix="generate_content_request.",
                plan=tool_plan(inner, prefix="generate_content_request."),
            )
        else:
            builder, prompt = await self._prompt(project, entry, body.contents, None)
        pieces = await token_breakdown(builder, len(prompt))
        return CountTokensResponse(
            total_tokens=len(prompt),
            cached_content_token_count=min(cache.cached_tokens, len(prompt)) if cache is not None else None,
            prompt_tokens_details=[ModalityTokenCount(modality="TEXT", token_count=len(prompt))],
            content_tokens=pieces.contents,
            system_instructions_tokens=pieces.system,
        )

    async def prompt_tokens(self, project: str, entry: ModelEntry, body: GenerateContentRequest) -> list[int]:
        """The prompt a request's contents, system instruction and tools make (what a cache holds)."""
        _, prompt = await self._prompt(project, entry, body.contents, body.system_instruction, plan=tool_plan(body))
        return prompt

    async def _prompt(
        self,
        project: str,
        entry: ModelEntry,
        contents: list[Content] | None,
        system: Content | None,
        prefix: str = "",
        plan: ToolPlan | None = None,
    ) -> tuple[PromptBuilder, list[int]]:
        if self._files is not None and contents:
            contents = await attach_files(self._files, project, contents, prefix)
        loaded = await self._engines.get(entry)
        builder = PromptBuilder(loaded, contents, system, plan, prefix)
        prompt = await builder.tokens()
        limit = min(entry.input_token_limit, loaded.context_length - 1)
        if len(prompt) > limit:
            raise errors.invalid_field(
                f"{prefix}contents",
                f"The input token count ({len(prompt)}) exceeds the maximum number of tokens allowed ({limit}).",
            )
        return builder, prompt


async def _check_grammar(loaded: LoadedModel, grammar: Grammar) -> None:
    try:
        await asyncio.to_thread(loaded.engine.check_grammar, grammar)  # a large schema takes a while
    except ValueError as exc:
        raise errors.InvalidArgument(f"The response schema cannot be enforced by {loaded.entry.id}: {exc}.") from None
