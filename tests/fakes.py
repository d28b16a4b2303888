"""A tiny deterministic engine, only for testing the HTTP layer without a model."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from localgem import errors
from localgem.engines.base import (
    CandidateFinished,
    DeadlineReached,
    EngineCapabilities,
    EngineEvent,
    EngineStats,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    OutputConstraint,
    StepLogprobs,
    TextDelta,
    TokenLogprob,
)
from localgem.engines.text import TextAssembler

WORDS = ["alpha", " beta", " gamma", " delta", " epsilon", " zeta", " eta", " theta"]


@dataclass
class FakeEngine:
    """Tokens are characters; the answer cycles through WORDS, one word per token.

    ``fail_after`` makes generation raise after that many tokens (a mid-stream failure);
    ``delay`` slows each token so tests can disconnect mid-generation; ``hold`` (a threading.Event) stops
    generation after the first token until it is set.
    """

    fail_after: int | None = None
    delay: float = 0.0
    info: ModelInfo = field(
        default_factory=lambda: ModelInfo(
            context_length=4096,
            trained_context_length=4096,
            vocab_size=256,
            chat_template=None,
            bos_token="",
            eos_token="",
            add_bos=False,
        )
    )
    stats: EngineStats = field(default_factory=EngineStats)
    #: Claims what the real engine can do, so that the server's paths for each run against the fake.
    capabilities: EngineCapabilities = field(
        default_factory=lambda: EngineCapabilities(constrained_output=True, kept_prefixes=True, logprobs=True)
    )
    hold: threading.Event | None = None
    cancelled: int = 0
    #: Answers to give instead of WORDS, one per request in turn (then WORDS again), each split into
    #: word-sized tokens: e.g. a function call block.
    script: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # every prompt generated from, as text (tokens are chars)
    kept: dict[str, list[int]] = field(default_factory=dict)  # keep_prefix: what each key would hold

    def check_constraint(self, constraint: OutputConstraint) -> None:
        """The fake does not constrain its output (its words come out whatever the constraint): it accepts any
        constraint that the engine's kind accepted when the request was planned (see ``engines.registry``)."""

    async def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return [ord(c) % 256 for c in text]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineEvent]:
        self.stats.requests_started += 1
        self.prompts.append("".join(chr(t) for t in request.prompt_tokens))
        finished = False
        try:
            for index in range(request.candidates):
                text = TextAssembler(request.stop_sequences)
                words = re.findall(r"\S+|\s+", self.script.pop(0)) if self.script else None
                produced, reason = 0, FinishReason.MAX_TOKENS
                while produced < request.max_tokens:
                    if self.fail_after is not None and produced >= self.fail_after:
                        raise errors.Internal("the fake engine failed on purpose")
                    if request.deadline is not None and asyncio.get_running_loop().time() > request.deadline:
                        yield DeadlineReached()
                        return
                    await asyncio.sleep(self.delay)
                    if produced == 1 and self.hold is not None:
                        await asyncio.to_thread(self.hold.wait)
                    if words is not None and produced >= len(words):
                        if (tail := text.finish()).text:
                            yield TextDelta(index, tail.text, tail.logprobs)
                        reason = FinishReason.STOP
                        break
                    word = words[produced] if words is not None else WORDS[(produced + index) % len(WORDS)]
                    step = StepLogprobs(TokenLogprob(produced, word, -0.5), (TokenLogprob(produced, word, -0.5),))
                    produced += 1
                    self.stats.tokens_generated += 1
                    released = text.push(word.encode(), step if request.logprobs is not None else None)
                    if released.text or released.logprobs:
                        yield TextDelta(index, released.text, released.logprobs)
                    if released.stopped:
                        reason = FinishReason.STOP
                        break
                else:
                    tail = text.finish()
                    if tail.text:
                        yield TextDelta(index, tail.text, tail.logprobs)
                yield CandidateFinished(index, reason, produced)
            finished = True
        finally:
            if not finished:
                self.cancelled += 1

    def healthy(self) -> bool:
        return True

    async def keep_prefix(self, key: str, prompt: list[int]) -> None:
        self.kept[key] = prompt

    async def drop_prefix(self, key: str) -> None:
        self.kept.pop(key, None)

    async def close(self) -> None:
        pass
