"""The contract every inference engine implements, and the events it emits.

Engines see token ids and sampling parameters, never wire types. Prompt rendering lives in
``localgem.prompting``; turning events into API responses lives in ``localgem.services``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Protocol


class FinishReason(enum.Enum):
    STOP = "STOP"
    MAX_TOKENS = "MAX_TOKENS"
    #: Stopped by the engine: the output had fallen into a loop, repeating itself exactly.
    REPETITION = "REPETITION"


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. ``temperature <= 0`` means greedy decoding."""

    temperature: float
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class Grammar:
    """A GBNF grammar the output must follow. With a ``trigger`` it is lazy: the output is free until
    it writes the trigger text, and what follows the trigger must match the grammar."""

    gbnf: str
    trigger: str | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt_tokens: list[int]
    sampling: SamplingParams
    max_tokens: int
    stop_sequences: tuple[str, ...] = ()
    candidates: int = 1
    #: None: no log probabilities; 0: the chosen token's only; N: also the N most likely tokens.
    logprobs: int | None = None
    #: Monotonic-clock deadline; past it, generation ends with ``DeadlineReached``.
    deadline: float | None = None
    #: Constrains what may be generated (structured output, function calls).
    grammar: Grammar | None = None
    #: A kept prefix (a cached content's KV state) to start from, when no slot holds more of the prompt.
    prefix_key: str | None = None
    #: Keep this request's prompt cells under this key when it ends (see ``prefix_key``).
    keep_as: str | None = None
    #: Batch work: waits while online requests are queued.
    background: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class StepLogprobs:
    chosen: TokenLogprob
    top: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class TextDelta:
    """New text of one candidate; ``logprobs`` covers the tokens this text completes."""

    index: int
    text: str
    logprobs: tuple[StepLogprobs, ...] = ()


@dataclass(frozen=True)
class CandidateFinished:
    index: int
    reason: FinishReason
    output_tokens: int


@dataclass(frozen=True)
class DeadlineReached:
    """The request's deadline passed before generation finished."""


@dataclass(frozen=True)
class Admitted:
    """The request left the queue; ``cached_tokens`` of its prompt were reused, not recomputed."""

    cached_tokens: int = 0


EngineEvent = Admitted | TextDelta | CandidateFinished | DeadlineReached


@dataclass
class EngineStats:
    """Counters that tests, benchmarks and /readyz read to see what the engine really did."""

    requests_started: int = 0
    requests_finished: int = 0
    requests_aborted: int = 0
    requests_rejected: int = 0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    tokens_generated: int = 0
    last_request_tokens_generated: int = 0
    active_sequences: int = 0
    queued_requests: int = 0
    #: Decode steps, and the rows (sequences) they decoded: rows/steps is the average batch.
    decode_steps: int = 0
    decode_rows: int = 0
    #: Requests that started from a kept prefix (a cached content's saved KV state).
    prefixes_restored: int = 0
    #: Batch requests paused (their cells saved) to give an online request their slot.
    swapped_out: int = 0
    #: Monotonic time of the scheduler loop's last turn (it turns at least twice a second).
    last_progress: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ModelInfo:
    """What the engine learnt from the model file."""

    context_length: int
    trained_context_length: int
    vocab_size: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool


class Engine(Protocol):
    info: ModelInfo
    stats: EngineStats

    async def tokenize(self, text: str, add_bos: bool = False) -> list[int]: ...

    def check_grammar(self, grammar: Grammar) -> None:
        """Raises ValueError if the engine cannot compile ``grammar``."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineEvent, None]:
        """Stream events for every candidate. Closing the iterator aborts the request."""
        ...

    def healthy(self) -> bool:
        """The engine's loop is alive and making progress."""
        ...

    async def keep_prefix(self, key: str, prompt: list[int]) -> None:
        """Compute ``prompt`` once and keep its KV state under ``key`` (for requests with ``prefix_key``)."""
        ...

    async def drop_prefix(self, key: str) -> None: ...

    async def close(self) -> None: ...
