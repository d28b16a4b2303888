"""generateContent, streamGenerateContent and countTokens."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Protocol

from localgem import errors
from localgem.caching.service import CacheUse
from localgem.engines.base import (
    UNBOUNDED,
    Admitted,
    CandidateFinished,
    DeadlineReached,
    GenerationRequest,
    JsonLimits,
    OutputConstraint,
    TextDelta,
)
from localgem.generation.code_execution import code_plan, with_text
from localgem.generation.function_calling import tool_plan
from localgem.generation.image_output import Painter, image_plan, streamed_with_image, with_image
from localgem.generation.loaded import LoadedModel
from localgem.generation.options import generation_options, refuse_unsupported_request
from localgem.generation.plan import GenerationPlan
from localgem.generation.prompts import Prompts
from localgem.generation.responses import ResponseShape, StreamChunker, UnaryResponseBuilder
from localgem.generation.rounds import RoundEvent, Rounds
from localgem.generation.speech_output import speech_plan, spoken_response, spoken_stream
from localgem.generation.thinking import thinking_plan
from localgem.generation.token_counts import token_breakdown
from localgem.generation.tools import ServerTools, ground
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.speech.speaking import Speaking
from localgem.types.content import Content
from localgem.types.generation import CountTokensRequest, GenerateContentRequest

if TYPE_CHECKING:
    from localgem.tuning.service import TunedTarget
from localgem.types.responses import Candidate, CountTokensResponse, GenerateContentResponse


class CachedContents(Protocol):
    """cachedContents, as generation uses them (``caching.CacheService``)."""

    async def apply(self, project: str, model: str, body: GenerateContentRequest, prefix: str = "") -> CacheUse: ...


class TunedModels(Protocol):
    """Tuned models, as generation serves them (``tuning.TuningService``)."""

    async def target(self, project: str, name: str, method: str) -> TunedTarget: ...


class GenerationService:
    """The one entry point of generation: ``plan`` turns any request (REST, a batch line, a Live turn)
    into a ``GenerationPlan`` (cached contents applied, tools resolved, every 4xx raised); ``generate``
    and ``stream`` run a plan."""

    def __init__(
        self,
        registry: ModelRegistry,
        prompts: Prompts,
        caches: CachedContents | None = None,
        clock: Callable[[], float] = time.monotonic,
        json_limits: JsonLimits = UNBOUNDED,
        default_max_output_tokens: int = 0,
        served_tools: ServerTools | None = None,
        speaking: Speaking | None = None,
        tuned: TunedModels | None = None,
        dynamic_thinking_budget: int = 1024,
        thinking_by_prompt: bool = True,
        painter: Painter | None = None,
    ) -> None:
        self._registry = registry
        self._tuned = tuned
        self._prompts = prompts
        self._caches = caches
        self._json_limits = json_limits
        self._default_max_output_tokens = default_max_output_tokens
        self._clock = clock
        self._served_tools = served_tools or {}
        self._speaking = speaking
        self._dynamic_thinking_budget = dynamic_thinking_budget
        self._thinking_by_prompt = thinking_by_prompt
        self._painter = painter

    async def plan(
        self,
        model: str,
        body: GenerateContentRequest,
        *,
        project: str,
        timeout: float | None = None,
        background: bool = False,
    ) -> GenerationPlan:
        """``timeout``: seconds the caller waits; ``background``: batch work, behind online requests."""
        cache = await self._apply_cache(project, model, body)
        if cache is not None:
            body = cache.request
        entry, adapter, model_version = await self._resolve(project, model, "generateContent")
        refuse_unsupported_request(body)
        options = generation_options(
            body.generation_config,
            entry,
            json_limits=self._json_limits,
            default_max_output_tokens=self._default_max_output_tokens,
        )
        speech = await speech_plan(body.generation_config, model, body.contents, self._speaking)
        image = image_plan(body.generation_config, entry, body.contents, self._painter)
        plan = tool_plan(body, served=self._served_tools, engine=entry.config.engine)
        if plan is not None and plan.calls_possible and options.constraint is not None:
            raise errors.invalid_field(
                "generation_config.response_mime_type",
                "Function calling with a response schema or JSON mode is not supported: use one or the other.",
            )
        grounding = await ground(body, self._served_tools, project) if plan is not None and plan.server_tools else None
        system = body.system_instruction
        if grounding is not None and grounding.context:
            system = with_text(system, grounding.context)
        code = await code_plan(plan.server_tools if plan else (), project, body.contents, self._prompts.media)
        if code is not None:
            _one_candidate(options.candidate_count, "Code execution")
            if options.constraint is not None:
                raise errors.invalid_field(
                    "generation_config.response_mime_type",
                    "Code execution with a response schema or JSON mode is not supported: use one or the other.",
                )
            system = with_text(system, code.instructions())
        thinking = thinking_plan(
            body.generation_config,
            await self._prompts.loaded(entry),
            "generation_config",
            dynamic_budget=self._dynamic_thinking_budget,
            by_prompt=self._thinking_by_prompt,
        )
        if thinking is not None and thinking.budget > 0:
            _one_candidate(options.candidate_count, "Thinking")
        if thinking is not None and thinking.prompted and thinking.budget > 0:
            system = with_text(system, thinking.prompt)
        builder, prompt = await self._prompts.build(project, entry, body.contents, system, plan=plan)
        loaded = builder.loaded
        if thinking is not None and not thinking.prompted:
            thinking = dataclasses.replace(thinking, opened=builder.render().rstrip().endswith(thinking.open_tag))
        constraint = options.constraint
        if plan is not None and plan.calls_possible:
            constraint = plan.constraint("arguments" if loaded.template.supports_tools else "args", self._json_limits)
        room = loaded.context_length - len(prompt)
        if options.max_output_tokens is not None and options.max_output_tokens > room:
            raise errors.invalid_field(
                "generation_config.max_output_tokens",
                f"The input ({len(prompt)} tokens) plus maxOutputTokens ({options.max_output_tokens}) exceeds the "
                f"context window of {entry.name} ({loaded.context_length} tokens).",
            )
        if constraint is not None:
            await _check_constraint(loaded, constraint)
        chat = None
        if loaded.engine.capabilities.renders_chat:
            for feature, used in (("Thinking", thinking is not None and thinking.budget > 0), ("Code execution", code)):
                if used:
                    raise errors.InvalidArgument(
                        f"{feature} is not supported on {entry.id}: its upstream engine renders the prompt itself."
                    )
            chat = builder.chat()
        request = GenerationRequest(
            prompt_tokens=prompt,
            sampling=options.sampling,
            max_tokens=min(options.output_budget, room),
            stop_sequences=options.stop_sequences,
            candidates=options.candidate_count,
            logprobs=options.logprobs,
            deadline=self._clock() + timeout if timeout else None,
            constraint=constraint,
            prefix_key=cache.cache_id if cache is not None and loaded.engine.capabilities.kept_prefixes else None,
            background=background,
            adapter=adapter,
            chat=chat,
        )
        shape = ResponseShape(
            response_id=secrets.token_urlsafe(16),
            model_version=model_version,
            prompt_tokens=len(prompt),
            logprobs=options.logprobs is not None,
            function_calling=plan is not None and plan.calls_possible,
            call_rules=plan.rules() if plan is not None else None,
            cached_tokens=min(cache.cached_tokens, len(prompt)) if cache is not None else 0,
            prompt_details=await builder.modality_tokens(len(prompt)) if builder.media else None,
            grounding=grounding,
            tool_prompt_tokens=await builder.count_text(grounding.context) if grounding and grounding.context else 0,
        )
        server_tools = plan.server_tools if plan is not None else ()
        return GenerationPlan(loaded, request, shape, server_tools, speech, thinking, code, image)

    async def _resolve(self, project: str, model: str, method: str) -> tuple[ModelEntry, str | None, str]:
        """The model a request names, the LoRA adapter it runs with (a tuned model's), and its version."""
        if not model.startswith("tunedModels/"):
            entry = self._registry.resolve(model, method)
            return entry, None, entry.id
        if self._tuned is None:
            raise errors.NotFound(f"{model} is not found: this server serves no tuned models.")
        target = await self._tuned.target(project, model, method)
        return target.entry, target.adapter, target.name

    async def _apply_cache(
        self, project: str, model: str, body: GenerateContentRequest | None, prefix: str = ""
    ) -> CacheUse | None:
        if body is None or not body.cached_content:
            return None
        if model.startswith("tunedModels/"):
            raise errors.invalid_field(f"{prefix}cached_content", "Cached contents cannot be used with a tuned model.")
        if self._caches is None:
            raise errors.not_supported(f"{prefix}cached_content", "Cached contents")
        return await self._caches.apply(project, model, body, prefix=prefix)

    async def generate(self, plan: GenerationPlan) -> GenerateContentResponse:
        if _draws_only(plan) or (plan.speech is not None and plan.speech.read_aloud is not None):
            response = _read_aloud(plan)
        else:
            builder = UnaryResponseBuilder(plan.shape)
            async for event in self._events(plan):
                builder.add(event)
            response = builder.build()
        if plan.speech is not None:
            assert self._speaking is not None
            response = await spoken_response(response, plan.speech, self._speaking)
        if plan.image is not None:
            assert self._painter is not None
            response = await with_image(response, plan.image, self._painter)
        return response

    async def stream(self, plan: GenerationPlan) -> AsyncIterator[GenerateContentResponse]:
        chunks = self._text_chunks(plan)
        if plan.speech is not None:
            assert self._speaking is not None
            chunks = spoken_stream(chunks, plan.speech, self._speaking)
        if plan.image is not None:
            assert self._painter is not None
            chunks = streamed_with_image(chunks, plan.image, self._painter)
        async with aclosing(chunks) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _text_chunks(self, plan: GenerationPlan) -> AsyncIterator[GenerateContentResponse]:
        if _draws_only(plan) or (plan.speech is not None and plan.speech.read_aloud is not None):
            yield _read_aloud(plan)
            return
        chunker = StreamChunker(plan.shape, plan.request.candidates)
        async with aclosing(self._events(plan)) as events:
            async for event in events:
                if (chunk := chunker.add(event)) is not None:
                    yield chunk

    async def _events(self, plan: GenerationPlan) -> AsyncIterator[RoundEvent]:
        if plan.thinking is None and plan.code is None:
            source: AsyncIterator[RoundEvent] = self._engine_events(plan, plan.request)
        else:
            rounds = itertools.count()
            # Only the first round's prompt is the request's: later rounds reuse what the first computed.
            run = lambda request: self._engine_events(plan, request, first=next(rounds) == 0)  # noqa: E731
            source = Rounds(plan.model, plan.request, run, plan.shape.response_id, plan.thinking, plan.code).events()
        # aclosing: a consumer that stops early (a client that left) aborts the generation at once.
        async with aclosing(source) as events:
            async for event in events:
                yield event

    async def _engine_events(
        self, plan: GenerationPlan, request: GenerationRequest, first: bool = True
    ) -> AsyncIterator[TextDelta | CandidateFinished]:
        async with aclosing(plan.model.engine.generate(request)) as events:
            async for event in events:
                if isinstance(event, DeadlineReached):
                    raise errors.DeadlineExceeded(
                        "The request deadline (X-Server-Timeout) passed before generation finished."
                    )
                if isinstance(event, Admitted):
                    if first:
                        if event.prompt_tokens is not None and plan.shape.prompt_details is None:
                            plan.shape.prompt_tokens = event.prompt_tokens  # the engine rendered it itself
                        cached = min(event.cached_tokens, plan.shape.prompt_tokens)
                        plan.shape.cached_tokens = max(plan.shape.cached_tokens, cached)
                    continue
                yield event

    async def count_tokens(self, model: str, body: CountTokensRequest, *, project: str) -> CountTokensResponse:
        """The tokens of ``contents``, or of a ``generateContentRequest`` (with its cached contents in front)."""
        cache = await self._apply_cache(project, model, body.generate_content_request, "generate_content_request.")
        entry = (await self._resolve(project, model, "countTokens"))[0]
        inner = cache.request if cache is not None else body.generate_content_request
        if inner is not None and body.contents:
            raise errors.InvalidArgument("Set either contents or generateContentRequest, not both.")
        if inner is not None:
            refuse_unsupported_request(inner, prefix="generate_content_request.")
            builder, prompt = await self._prompts.build(
                project,
                entry,
                inner.contents,
                inner.system_instruction,
                prefix="generate_content_request.",
                plan=tool_plan(
                    inner, prefix="generate_content_request.", served=self._served_tools, engine=entry.config.engine
                ),
            )
        else:
            builder, prompt = await self._prompts.build(project, entry, body.contents, None)
        pieces = await token_breakdown(builder, len(prompt))
        return CountTokensResponse(
            total_tokens=len(prompt),
            cached_content_token_count=min(cache.cached_tokens, len(prompt)) if cache is not None else None,
            prompt_tokens_details=await builder.modality_tokens(len(prompt)),
            content_tokens=pieces.contents,
            system_instructions_tokens=pieces.system,
        )


def _one_candidate(count: int, feature: str) -> None:
    if count > 1:
        raise errors.invalid_field(
            "generation_config.candidate_count", f"{feature} generates one candidate: candidateCount must be 1."
        )


def _draws_only(plan: GenerationPlan) -> bool:
    """IMAGE alone was asked for: the image is the answer; the chat model writes nothing."""
    return plan.image is not None and not plan.image.text_too


def _read_aloud(plan: GenerationPlan) -> GenerateContentResponse:
    """A TTS model's answer before it is spoken, or an image's before it is drawn: nothing generated."""
    candidate = Candidate(index=0, content=Content(role="model", parts=[]), finish_reason="STOP")
    return plan.shape.response([candidate], plan.shape.usage(0))


async def _check_constraint(loaded: LoadedModel, constraint: OutputConstraint) -> None:
    try:
        await asyncio.to_thread(loaded.engine.check_constraint, constraint)  # a large schema takes a while
    except ValueError as exc:
        raise errors.InvalidArgument(f"The response schema cannot be enforced by {loaded.entry.id}: {exc}.") from None
