"""One Live conversation: client messages in, server messages out, turns run on the batched engine.

Knows nothing of WebSockets: it is given a ``send`` for server messages, and reports the error that
ends it through ``ended``. Each turn is a ``GenerationService`` plan over the whole history, so every
generationConfig field, tools and structured output behave as in REST; the engine's prefix reuse keeps
the earlier turns' KV state, so a turn prefills only what is new.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

from pydantic.alias_generators import to_camel

from localgem import errors
from localgem.generation.plan import GenerationPlan
from localgem.generation.service import GenerationService
from localgem.live import wire
from localgem.live.resumption import LiveStates
from localgem.types.content import Content, FunctionCall, Part
from localgem.types.generation import CountTokensRequest, GenerateContentRequest

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Google's default trigger: 80% of the model's context window; sliding window target: half the trigger.
DEFAULT_TRIGGER_SHARE = 0.8
_PROBE = [Content(role="user", parts=[Part(text="Hello")])]


class ClientGone(Exception):
    """Raised by ``send`` once the client has left: the turn stops, quietly."""


def _model(setup: wire.LiveSetup) -> str:
    if not setup.model:
        raise errors.invalid_field("setup.model", "setup.model is required (models/…).")
    return setup.model.removeprefix("models/")


def _request(setup: wire.LiveSetup, contents: list[Content]) -> GenerateContentRequest:
    return GenerateContentRequest(
        contents=contents,
        system_instruction=setup.system_instruction,
        tools=setup.tools,
        tool_config=setup.tool_config,
        generation_config=setup.generation_config,
        safety_settings=setup.safety_settings,
    )


async def check_setup(generation: GenerationService, setup: wire.LiveSetup, project: str) -> int:
    """Every 4xx a setup deserves, at once rather than at the first turn. Returns the model's input window."""
    model = _model(setup)
    for field in ("translation_config", "avatar_config"):
        if getattr(setup, field) is not None:
            raise errors.not_supported(f"setup.{field}")
    config = setup.generation_config
    if config is not None and config.candidate_count not in (None, 1):
        raise errors.invalid_field("setup.generation_config.candidate_count", "A Live session has one candidate.")
    compression = setup.context_window_compression
    if compression is not None:
        trigger = compression.trigger_tokens
        target = compression.sliding_window.target_tokens if compression.sliding_window else None
        if trigger is not None and trigger <= 0:
            raise errors.invalid_field("setup.context_window_compression.trigger_tokens", "triggerTokens must be > 0.")
        if target is not None and (target < 0 or (trigger is not None and target >= trigger)):
            raise errors.invalid_field(
                "setup.context_window_compression.sliding_window.target_tokens",
                "targetTokens must be at least 0 and below triggerTokens.",
            )
    plan = await generation.plan(model, _request(setup, _PROBE), project=project)
    return min(plan.model.entry.input_token_limit, plan.model.context_length - 1)


class LiveSession:
    def __init__(
        self,
        generation: GenerationService,
        states: LiveStates,
        *,
        project: str,
        setup: wire.LiveSetup,
        window: int,
        send: Send,
        history: list[Content] | None = None,
        session_id: str | None = None,
    ) -> None:
        self._generation = generation
        self._states = states
        self._project = project
        self._setup = setup
        self._model = _model(setup)
        self._window = window
        self._send = send
        self.history: list[Content] = list(history or [])
        self.session_id = session_id or secrets.token_hex(16)
        config = setup.realtime_input_config
        detection = config.automatic_activity_detection if config is not None else None
        self._manual_activity = bool(detection is not None and detection.disabled)
        self._interrupts = config is None or config.activity_handling != "NO_INTERRUPTION"
        #: Fails with the error that ends the session (a turn that cannot run).
        self.ended: asyncio.Future[errors.ApiError] = asyncio.get_running_loop().create_future()
        self._turn: asyncio.Task[None] | None = None
        self._partial: list[str] | None = None  # the running turn's text so far, until it joins the history
        self._pending_calls: dict[str, str] = {}  # id → name: the calls the current turn waits on
        self._activity: list[str] | None = None  # text of an open activity (manual activity detection)
        self._queued: list[Content] = []  # input that came while a turn ran, without interrupting it
        self._answering = False  # the model is producing the running turn's answer (interruptible)

    @property
    def generating(self) -> bool:
        return self._turn is not None and not self._turn.done()

    @property
    def busy(self) -> bool:
        return self.generating or bool(self._pending_calls)

    async def handle(self, message: wire.ClientMessage) -> None:
        if isinstance(message, wire.LiveSetup):
            raise errors.InvalidArgument("setup may be sent only once, as the first message of a session.")
        if isinstance(message, wire.ClientContent):
            await self._client_content(message)
        elif isinstance(message, wire.RealtimeInput):
            await self._realtime_input(message)
        else:
            await self._tool_response(message)

    async def close(self) -> None:
        """The client left (or the server is closing): stop generating at once, freeing the engine's slot."""
        if self._turn is not None:
            self._turn.cancel()
            await asyncio.gather(self._turn, return_exceptions=True)

    # Input -------------------------------------------------------------------------------------------

    async def _client_content(self, message: wire.ClientContent) -> None:
        turns = message.turns or []
        for i, turn in enumerate(turns):
            if turn.role not in (None, "user", "model"):
                raise errors.invalid_field(
                    f"client_content.turns[{i}].role", f"A turn's role is user or model, not {turn.role!r}."
                )
        # Google: client content always interrupts the model's current turn.
        if turns or message.turn_complete:
            await self._interrupt()
        self.history.extend(turns)
        if message.turn_complete:
            if not self.history:
                raise errors.invalid_field("client_content.turns", "turnComplete with no conversation to answer.")
            await self._start_turn()

    async def _realtime_input(self, message: wire.RealtimeInput) -> None:
        for field in ("audio", "video", "media_chunks"):
            if getattr(message, field) is not None:
                raise errors.invalid_field(
                    f"realtime_input.{field}",
                    f"realtimeInput.{to_camel(field)} is not supported yet: this server's Live sessions take "
                    "text (realtimeInput.text, clientContent).",
                )
        if (message.activity_start is not None or message.activity_end is not None) and not self._manual_activity:
            raise errors.InvalidArgument(
                "activityStart and activityEnd are sent only when realtimeInputConfig.automaticActivityDetection "
                "is disabled."
            )
        if message.activity_start is not None:
            if self._interrupts:
                await self._interrupt()
            self._activity = []
        if message.text is not None:
            if self._activity is not None:
                self._activity.append(message.text)
            elif message.text:
                await self._user_turn(message.text)
        if message.activity_end is not None and self._activity is not None:
            text, self._activity = "".join(self._activity), None
            if text:
                await self._user_turn(text)

    async def _user_turn(self, text: str) -> None:
        content = Content(role="user", parts=[Part(text=text)])
        if self.busy and not self._interrupts:
            self._queued.append(content)
            return
        await self._interrupt()
        self.history.append(content)
        await self._start_turn()

    async def _tool_response(self, message: wire.ToolResponse) -> None:
        """Responses to the calls the model waits on join the conversation; when none is left waiting, the
        model goes on. A response to no waiting call is dropped (Google answers nothing to it either):
        the conversation keeps every response right after its call."""
        responses = message.function_responses or []
        if not responses:
            raise errors.invalid_field("tool_response.function_responses", "A toolResponse needs functionResponses.")
        answered = []
        for i, response in enumerate(responses):
            call_id = self._waiting_call(response.id, response.name, f"tool_response.function_responses[{i}]")
            if call_id is None:
                log.debug("a Live tool response for no waiting call was dropped (id %r)", response.id)
                continue
            response.id = response.id or call_id or None
            response.name = response.name or self._pending_calls[call_id]
            del self._pending_calls[call_id]
            answered.append(response)
        if not answered:
            return
        self.history.append(Content(role="user", parts=[Part(function_response=r) for r in answered]))
        if not self._pending_calls:
            await self._start_turn()

    def _waiting_call(self, call_id: str | None, name: str | None, where: str) -> str | None:
        if call_id:
            return call_id if call_id in self._pending_calls else None
        named = [waiting for waiting, called in self._pending_calls.items() if called == name]
        if len(named) > 1:
            raise errors.invalid_field(f"{where}.id", f"Several calls of {name} wait: say which one this answers (id).")
        if not named and name is None:
            raise errors.invalid_field(f"{where}.id", "A function response needs the id of the call it answers.")
        return named[0] if named else None

    async def _settle(self) -> None:
        """Let a turn that has finished answering complete its last steps (turnComplete, the state saved, its
        handle sent), also any queued turn it started in its place, before anything else touches it."""
        while self._turn is not None and not self._turn.done() and not self._answering:
            await asyncio.shield(self._turn)

    async def _interrupt(self) -> None:
        await self._settle()
        if self._turn is not None and not self._turn.done():  # the model is answering: stop it there
            self._turn.cancel()
            await asyncio.gather(self._turn, return_exceptions=True)
            if self._partial:
                self.history.append(Content(role="model", parts=[Part(text="".join(self._partial))]))
            self._partial = None
            self._answering = False
            await self._send(wire.interrupted())
        # Input queued behind the stopped turn comes before the input that stopped it.
        self.history.extend(self._queued)
        self._queued.clear()
        if self._pending_calls:
            ids = list(self._pending_calls)
            self._pending_calls.clear()
            self._drop_unanswered_calls(set(ids))
            await self._send(wire.tool_call_cancellation(ids))

    def _drop_unanswered_calls(self, ids: set[str]) -> None:
        for turn in reversed(self.history):
            if turn.role == "model":
                kept = [p for p in turn.parts or [] if p.function_call is None or p.function_call.id not in ids]
                turn.parts = kept or [Part(text="")]
                return

    # Turns -------------------------------------------------------------------------------------------

    async def _start_turn(self) -> None:
        await self._settle()
        self._launch()

    def _launch(self) -> None:
        self._answering = True
        self._turn = asyncio.create_task(self._run_turn_safely())

    async def _run_turn_safely(self) -> None:
        try:
            await self._run_turn()
            if self._queued and not self._pending_calls:
                self.history.extend(self._queued)
                self._queued.clear()
                self._launch()
        except ClientGone:
            return
        except errors.ApiError as exc:
            self._end(exc)
        except Exception:  # a turn must never take the server down: it ends this session
            log.exception("a Live turn failed")
            self._end(errors.Internal("An internal error occurred while generating the turn."))
        finally:
            if asyncio.current_task() is self._turn:
                self._answering = False

    def _end(self, exc: errors.ApiError) -> None:
        if not self.ended.done():
            self.ended.set_result(exc)

    async def _run_turn(self) -> None:
        plan = await self._plan()
        self._partial = []
        calls: list[FunctionCall] = []
        used = wire.usage(plan.shape.prompt_tokens, 0)
        # aclosing: a turn cancelled mid-stream ends its engine request at once, not when collected.
        async with aclosing(self._generation.stream(plan)) as chunks:
            async for chunk in chunks:
                candidate = (chunk.candidates or [None])[0]
                parts = candidate.content.parts if candidate is not None and candidate.content is not None else []
                text = [p for p in parts or [] if p.text]
                calls.extend(p.function_call for p in parts or [] if p.function_call is not None)
                if text:
                    self._partial.extend(p.text or "" for p in text)
                    await self._send(wire.model_turn(Content(role="model", parts=text)))
                meta = chunk.usage_metadata
                if meta is not None and meta.candidates_token_count is not None:
                    used = wire.usage(
                        meta.prompt_token_count or 0, meta.candidates_token_count, meta.cached_content_token_count or 0
                    )
        parts = [Part(text="".join(self._partial))] if self._partial or not calls else []
        parts += [Part(function_call=call) for call in calls]
        # From here the answer is whole: new input no longer interrupts it, it waits for these last steps.
        self.history.append(Content(role="model", parts=parts))
        self._partial = None
        self._answering = False
        if calls:
            self._pending_calls = {call.id or "": call.name or "" for call in calls}
            await self._send(wire.tool_call(calls))
            return
        await self._send(wire.generation_complete())
        await self._send(wire.turn_complete(used))
        if self._setup.session_resumption is not None:
            handle = await self._states.save(self._project, self.session_id, self._setup, self.history)
            await self._send(wire.resumption_update(handle))

    async def _plan(self) -> GenerationPlan:
        if self._setup.context_window_compression is not None:
            await self._compress(self._setup.context_window_compression)
        return await self._generation.plan(self._model, _request(self._setup, self.history), project=self._project)

    async def _compress(self, compression: wire.ContextWindowCompression) -> None:
        """Sliding window: past triggerTokens, drop the oldest turns until targetTokens remain (the system
        instruction and tools always stay; the remaining history starts with a user turn)."""
        trigger = compression.trigger_tokens or int(self._window * DEFAULT_TRIGGER_SHARE)
        window = compression.sliding_window
        target = window.target_tokens if window is not None and window.target_tokens is not None else trigger // 2
        tokens = await self._count()
        if tokens <= trigger:
            return
        # Never past the last turn the client said (not a function response): what the model answers now.
        floor = max((i for i, c in enumerate(self.history) if c.role != "model" and not _answers_calls(c)), default=0)
        while floor > 0 and tokens > target:
            dropped = 1
            while dropped < floor and (self.history[dropped].role == "model" or _answers_calls(self.history[dropped])):
                dropped += 1
            del self.history[:dropped]
            floor -= dropped
            tokens = await self._count()

    async def _count(self) -> int:
        request = CountTokensRequest(generate_content_request=_request(self._setup, self.history))
        return (await self._generation.count_tokens(self._model, request, project=self._project)).total_tokens or 0


def _answers_calls(content: Content) -> bool:
    return any(part.function_response is not None for part in content.parts or [])
