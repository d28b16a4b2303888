"""One Live conversation: client messages in, server messages out, turns run on the batched engine.

Knows nothing of WebSockets: it is given a ``send`` for server messages, and reports the error that
ends it through ``ended``. Each turn is a ``GenerationService`` plan over the whole history, so every
generationConfig field, tools and structured output behave as in REST; the engine's prefix reuse keeps
the earlier turns' KV state, so a turn prefills only what is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from localgem import errors
from localgem.generation.plan import GenerationPlan
from localgem.generation.service import GenerationService
from localgem.generation.speech_output import SpeechPlan, speech_plan
from localgem.live import listening, wire
from localgem.live.resumption import LiveStates
from localgem.live.watching import Frames
from localgem.speech.hearing import Hearing
from localgem.speech.speaking import LIVE_OUTPUT_MIME, OUTPUT_RATE, Line, Speaking
from localgem.types.content import Blob, Content, FunctionCall, Part
from localgem.types.generation import CountTokensRequest, GenerateContentRequest, GenerationConfig

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Google's default trigger: 80% of the model's context window; sliding window target: half the trigger.
DEFAULT_TRIGGER_SHARE = 0.8
_PROBE = [Content(role="user", parts=[Part(text="Hello")])]
_AUDIO_MESSAGE_BYTES = OUTPUT_RATE * 2  # one second of 24 kHz 16-bit audio


class ClientGone(Exception):
    """Raised by ``send`` once the client has left: the turn stops, quietly."""


def _model(setup: wire.LiveSetup) -> str:
    if not setup.model:
        raise errors.invalid_field("setup.model", "setup.model is required (models/…).")
    return setup.model.removeprefix("models/")


def _request(setup: wire.LiveSetup, contents: list[Content]) -> GenerateContentRequest:
    """A turn's request: the model writes; what it writes is spoken here (sentence by sentence, with
    transcriptions), not by the REST speech path."""
    config = setup.generation_config
    if config is not None:
        config = config.model_copy(update={"response_modalities": None, "speech_config": None})
    return GenerateContentRequest(
        contents=contents,
        system_instruction=setup.system_instruction,
        tools=setup.tools,
        tool_config=setup.tool_config,
        generation_config=config,
        safety_settings=setup.safety_settings,
    )


def _spoken_config(setup: wire.LiveSetup) -> GenerationConfig:
    """Google's Live sessions answer in AUDIO unless responseModalities says otherwise."""
    config = setup.generation_config or GenerationConfig()
    if not config.response_modalities:
        config = config.model_copy(update={"response_modalities": ["AUDIO"]})
    modalities = [m for m in config.response_modalities or [] if m != "MODALITY_UNSPECIFIED"]
    if len(modalities) != 1 or modalities[0] not in ("TEXT", "AUDIO"):
        raise errors.invalid_field(
            "setup.generation_config.response_modalities",
            f"A Live session answers in one modality, TEXT or AUDIO; got {', '.join(modalities) or 'none'}.",
        )
    return config


@dataclass(frozen=True)
class SessionSetup:
    window: int  # the model's input window, in tokens
    speech: SpeechPlan | None  # how answers are spoken (None: they are written)
    sees: bool = False  # the model takes video frames (a vision model)


async def check_setup(
    generation: GenerationService, setup: wire.LiveSetup, project: str, speaking: Speaking | None = None
) -> SessionSetup:
    """Every 4xx a setup deserves, at once rather than at the first turn."""
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
    speech = await speech_plan(_spoken_config(setup), "live", None, speaking, "setup.generation_config")
    detection = setup.realtime_input_config.automatic_activity_detection if setup.realtime_input_config else None
    listening.detection(detection)
    window = min(plan.model.entry.input_token_limit, plan.model.context_length - 1)
    return SessionSetup(window, speech, plan.model.engine.capabilities.images)


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
        speech: SpeechPlan | None = None,
        hearing: Hearing | None = None,
        speaking: Speaking | None = None,
        sees: bool = False,
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
        self._speech = speech
        self._hearing = hearing
        self._speaking = speaking
        self._listener: listening.Listener | None = None
        self._frames = Frames(sees)
        #: Client messages and utterances the listener finishes (from its own task) change the
        #: conversation one at a time: two inputs never start two turns.
        self._input = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None

    def warm_up(self) -> None:
        """A voice session loads its speech models now, not when the user first speaks."""
        if self._speech is None and self._setup.input_audio_transcription is None:
            return
        work = []
        if self._speech is not None and self._speaking is not None:
            work.append(self._speaking.warm(self._speech.voice))
        if self._hearing is not None and self._hearing.available:
            work.append(self._hearing.transcriber())
            work.append(asyncio.to_thread(listening.load_detector))
        self._warming = asyncio.get_running_loop().create_task(_quietly(work))

    @property
    def generating(self) -> bool:
        return self._turn is not None and not self._turn.done()

    @property
    def busy(self) -> bool:
        return self.generating or bool(self._pending_calls)

    async def handle(self, message: wire.ClientMessage) -> None:
        if isinstance(message, wire.LiveSetup):
            raise errors.InvalidArgument("setup may be sent only once, as the first message of a session.")
        async with self._input:
            if isinstance(message, wire.ClientContent):
                await self._client_content(message)
            elif isinstance(message, wire.RealtimeInput):
                await self._realtime_input(message)
            else:
                await self._tool_response(message)

    async def close(self) -> None:
        """The client left (or the server is closing): stop generating at once, freeing the engine's slot."""
        if self._warming is not None:
            self._warming.cancel()
        if self._listener is not None:
            await self._listener.close()
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
        audio = [("realtime_input.audio", message.audio)] if message.audio is not None else []
        for i, chunk in enumerate(message.media_chunks or []):
            audio.append((f"realtime_input.media_chunks[{i}]", chunk))
        frames = [("realtime_input.video", message.video)] if message.video is not None else []
        frames += [(where, blob) for where, blob in audio if not (blob.mime_type or "audio/").startswith("audio/")]
        audio = [(where, blob) for where, blob in audio if (blob.mime_type or "audio/").startswith("audio/")]
        for where, blob in frames:
            self._frames.add(blob, where)
        if (message.activity_start is not None or message.activity_end is not None) and not self._manual_activity:
            raise errors.InvalidArgument(
                "activityStart and activityEnd are sent only when realtimeInputConfig.automaticActivityDetection "
                "is disabled."
            )
        if message.activity_start is not None:
            if self._interrupts:
                await self._interrupt()
            self._activity = []
            if self._listener is not None:
                await self._listener.start()
        for where, blob in audio:
            rate = listening.pcm_rate(blob, where)
            listener = self._listen()
            if self._activity is not None:
                await listener.start()  # audio of the open activity (a no-op once it has started)
            await listener.push_pcm(blob.data or b"", rate)
        if message.audio_stream_end and self._listener is not None and not self._manual_activity:
            await self._listener.end()
        if message.text is not None:
            if self._activity is not None:
                self._activity.append(message.text)
            elif message.text:
                await self._user_turn(message.text)
        if message.activity_end is not None and self._activity is not None:
            text, self._activity = "".join(self._activity), None
            if self._listener is not None and self._listener.talking:
                await self._listener.end(typed=text)  # one turn: what was typed, then what was said
            elif text:
                await self._user_turn(text)

    def _listen(self) -> listening.Listener:
        if self._hearing is None or not self._hearing.available:
            raise errors.invalid_field(
                "realtime_input.audio", "Audio input needs a speech-to-text model; this server has none."
            )
        if self._listener is None:
            config = self._setup.realtime_input_config
            auto = config.automatic_activity_detection if config is not None else None
            self._listener = listening.Listener(
                self._hearing,
                None if self._manual_activity else listening.detection(auto),
                started=self._speech_started,
                heard=self._speech_heard,
                said=self._speech_said,
                failed=self._end,
            )
        return self._listener

    async def _speech_started(self) -> None:
        """The user speaks: over the model's answer, that is barge-in (unless NO_INTERRUPTION)."""
        if self._interrupts and not self._manual_activity:
            await self._interrupt()

    async def _speech_heard(self, text: str) -> None:
        if self._setup.input_audio_transcription is not None:
            with contextlib.suppress(ClientGone):
                await self._send(wire.input_transcription(text))

    async def _speech_said(self, text: str) -> None:
        """A whole utterance, from the listener's own task: answered like any other input, in turn."""
        async with self._input:
            with contextlib.suppress(ClientGone):
                await self._user_turn(text)

    async def _user_turn(self, text: str) -> None:
        content = Content(role="user", parts=[*self._frames.take(), Part(text=text)])
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
        talker = self._speech.talker() if self._speech is not None else None
        calls: list[FunctionCall] = []
        answer: list[Part] = []  # in order: text, code and its results (thoughts are not kept)
        grounded: dict | None = None
        used = wire.usage(plan.shape.prompt_tokens, 0)
        # aclosing: a turn cancelled mid-stream ends its engine request at once, not when collected.
        async with contextlib.aclosing(self._generation.stream(plan)) as chunks:
            async for chunk in chunks:
                candidate = (chunk.candidates or [None])[0]
                parts = candidate.content.parts if candidate is not None and candidate.content is not None else []
                text = [p for p in parts or [] if p.text and not p.thought]
                shown = [p for p in parts or [] if p.thought or _whole(p)]  # thoughts, code, results, figures
                calls.extend(p.function_call for p in parts or [] if p.function_call is not None)
                if candidate is not None and candidate.grounding_metadata:
                    grounded = candidate.grounding_metadata
                for part in parts or []:
                    if part.text and not part.thought and answer and answer[-1].text is not None:
                        answer[-1] = Part(text=answer[-1].text + part.text)
                    elif (part.text and not part.thought) or _whole(part):
                        answer.append(Part(text=part.text) if part.text else part)
                if shown:
                    await self._send(wire.model_turn(Content(role="model", parts=shown)))
                if text:
                    self._partial.extend(p.text or "" for p in text)
                    if talker is None:
                        await self._send(wire.model_turn(Content(role="model", parts=text)))
                    else:
                        for line in talker.feed("".join(p.text or "" for p in text)):
                            await self._say(line)
                meta = chunk.usage_metadata
                if meta is not None and meta.candidates_token_count is not None:
                    used = wire.usage(
                        meta.prompt_token_count or 0, meta.candidates_token_count, meta.cached_content_token_count or 0
                    )
        for line in talker.finish() if talker is not None else []:
            await self._say(line)
        parts = answer if answer or calls else [Part(text="")]
        parts += [Part(function_call=call) for call in calls]
        # From here the answer is whole: new input no longer interrupts it, it waits for these last steps.
        self.history.append(Content(role="model", parts=parts))
        self._partial = None
        self._answering = False
        if grounded is not None:
            await self._send(wire.grounding(grounded))
        if calls:
            self._pending_calls = {call.id or "": call.name or "" for call in calls}
            await self._send(wire.tool_call(calls))
            return
        await self._send(wire.generation_complete())
        await self._send(wire.turn_complete(used))
        if self._setup.session_resumption is not None:
            handle = await self._states.save(self._project, self.session_id, self._setup, self.history)
            await self._send(wire.resumption_update(handle))

    async def _say(self, line: Line) -> None:
        """One sentence of the answer, spoken: its transcription, then its audio in pieces of at most a second."""
        assert self._speaking is not None
        if self._setup.output_audio_transcription is not None:
            await self._send(wire.output_transcription(line.text + " "))
        async for pcm in self._speaking.speak(line.text, line.voice):
            for at in range(0, len(pcm), _AUDIO_MESSAGE_BYTES):
                await self._send(
                    wire.model_turn(Content(role="model", parts=[_audio(pcm[at : at + _AUDIO_MESSAGE_BYTES])]))
                )

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


async def _quietly(work: list[Awaitable[Any]]) -> None:
    """Warming up is best effort: a model that fails to load says so when it is used."""
    await asyncio.gather(*work, return_exceptions=True)


def _audio(pcm: bytes) -> Part:
    return Part(inline_data=Blob(data=pcm, mime_type=LIVE_OUTPUT_MIME))


def _whole(part: Part) -> bool:
    """A part that is not streamed text: the code the model ran, its result, a figure."""
    return part.executable_code is not None or part.code_execution_result is not None or part.inline_data is not None


def _answers_calls(content: Content) -> bool:
    return any(part.function_response is not None for part in content.parts or [])
