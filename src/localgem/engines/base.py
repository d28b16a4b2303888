"""The contract every inference engine implements, and the events it emits.

Engines see token ids, sampling parameters and output constraints, never wire types. A constraint
says what the output must be in engine-neutral terms (JSON valid against a JSON Schema, one of some
strings, tagged function calls); each engine turns it into what it enforces (llama.cpp: a GBNF
grammar, inside ``engines.llama``). Prompt rendering and turning events into API responses live in
``localgem.generation``.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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
class JsonLimits:
    """Bounds for what a schema leaves unbounded (0: unbounded), so that a model looping inside a string,
    an array or an open object still ends, with valid JSON."""

    string_chars: int = 0
    items: int = 0


UNBOUNDED = JsonLimits()


class UnenforceableSchema(ValueError):
    """A schema keyword (or value) that decoding cannot enforce. ``path`` names where it is; an engine
    that cannot say where leaves it None (the schema as a whole)."""

    def __init__(self, path: str | None, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class JsonOutput:
    """The output is one JSON value valid against ``schema`` (a JSON Schema whose ``pattern``s match
    whole strings); ``schema=None``: any JSON object or array (JSON mode)."""

    schema: dict[str, Any] | None = None
    limits: JsonLimits = UNBOUNDED


@dataclass(frozen=True)
class ChoiceOutput:
    """The output is exactly one of ``values``, as plain text (``text/x.enum``)."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class ToolFunction:
    name: str
    #: JSON Schema of the arguments object.
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCalls:
    """The output may hold function calls: each is ``open_tag``, the JSON object ``{"name": ..., args_key:
    {...}}`` naming one of ``functions`` with arguments valid against its parameters, then ``close_tag``
    (a newline may follow the open tag, and come between and after calls); at most ``max_calls`` of them.
    ``required``: the output is one or more calls and nothing else; otherwise it is free text until it
    writes ``open_tag``, and calls from there on."""

    functions: tuple[ToolFunction, ...]
    required: bool
    open_tag: str
    close_tag: str
    args_key: str
    max_calls: int
    limits: JsonLimits = UNBOUNDED


#: What a request's output must be (structured output, function calls).
OutputConstraint = JsonOutput | ChoiceOutput | ToolCalls


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
    #: What the output must be (structured output, function calls); see ``Engine.check_constraint``.
    constraint: OutputConstraint | None = None
    #: A kept prefix (see ``Engine.keep_prefix``) to start from. Engines without ``kept_prefixes`` ignore it.
    prefix_key: str | None = None
    #: Keep this request's prompt state under this key when it ends (see ``prefix_key``).
    keep_as: str | None = None
    #: Batch work: waits while online requests are queued.
    background: bool = False
    #: A LoRA adapter (a file the engine reads; a tuned model's) applied over the base weights for this request.
    #: Engines without ``adapters`` refuse it.
    adapter: str | None = None
    #: The conversation as chat messages, for engines that render the prompt themselves (``renders_chat``):
    #: they generate from this, not from ``prompt_tokens``.
    chat: ChatPrompt | None = None


@dataclass(frozen=True)
class ChatPrompt:
    """A prompt before its chat template: messages and function declarations as Hugging Face chat templates
    take them (``role``/``content``, an assistant's ``tool_calls``, ``tool`` messages with the function's
    ``name``; ``tools`` as ``{"type": "function", "function": {...}}``)."""

    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...] = ()


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
    """The request left the queue; ``cached_tokens`` of its prompt were reused, not recomputed (it may come again
    with more, once the prompt starts from a copy of cells another request computed).
    ``prompt_tokens``: the prompt's length as the engine counted it, where it rendered the prompt itself."""

    cached_tokens: int = 0
    prompt_tokens: int | None = None


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
    #: Draft rows decode steps took (a guess at a lone sequence's next token; see ``llama.drafts``), and those
    #: whose guess was sampled (a second token from the same step).
    draft_rows: int = 0
    drafts_accepted: int = 0
    #: Requests that started from a kept prefix (a cached content's saved KV state).
    prefixes_restored: int = 0
    #: Requests whose prompt started from a copy of another slot's cells (see ``PrefixReuse.source``).
    prompts_copied: int = 0
    #: Batch requests paused (their cells saved) to give an online request their slot.
    swapped_out: int = 0
    #: KV cells the slots hold now (running sequences' tokens and the prefix cache), after the last turn.
    kv_cells_used: int = 0
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


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do beyond generating text; callers check before relying on one."""

    #: Enforces ``GenerationRequest.constraint`` (as far as ``check_constraint`` accepts it).
    constrained_output: bool = False
    #: ``keep_prefix`` / ``drop_prefix`` work, and requests may start from a kept prefix (``prefix_key``).
    kept_prefixes: bool = False
    #: Reports log probabilities (``GenerationRequest.logprobs``).
    logprobs: bool = False
    #: Sees images: ``tokenize`` takes ``pictures`` (a vision model with its projector).
    images: bool = False
    #: Applies LoRA adapters per request (``GenerationRequest.adapter``): tuned models run on it.
    adapters: bool = False
    #: Renders the prompt itself from ``GenerationRequest.chat`` (an upstream server's chat API): requests
    #: that extend a prompt as raw text (thinking rounds, code execution) cannot run on it.
    renders_chat: bool = False


@dataclass(frozen=True)
class Picture:
    """An image for a vision model: 8-bit RGB pixels, row by row."""

    rgb: bytes
    width: int
    height: int
    digest: str  # sha256 of ``rgb``: the same picture is encoded once


#: Where a picture goes in prompt text given to ``Engine.tokenize`` (random per process, so no user text
#: can contain it). Its tokens come back as placeholders: negative ids, the same for the same picture.
PICTURE_MARKER = f"<__localgem_picture_{secrets.token_hex(8)}__>"

#: Texts this short are tokenized on the event loop: a hop to a worker thread costs more than they do
#: (~100 µs for 256 characters; a thread hop ~140 µs idle, more under load).
INLINE_TOKENIZE_CHARS = 256


async def tokenize_in_process(tokenize: Callable[[str, bool], list[int]], text: str, add_bos: bool) -> list[int]:
    """An in-process tokenizer's ids for ``text``: on the event loop when short, else on a worker thread."""
    if len(text) <= INLINE_TOKENIZE_CHARS:
        return tokenize(text, add_bos)
    return await asyncio.to_thread(tokenize, text, add_bos)


class Engine(Protocol):
    info: ModelInfo
    stats: EngineStats
    capabilities: EngineCapabilities

    async def tokenize(self, text: str, add_bos: bool = False, pictures: Sequence[Picture] = ()) -> list[int]:
        """``text``'s tokens; with ``capabilities.images``, each PICTURE_MARKER in it is the next of
        ``pictures``, as the placeholder tokens that stand for its embeddings."""
        ...

    def check_constraint(self, constraint: OutputConstraint) -> None:
        """Raises ValueError (``UnenforceableSchema`` where it can name a place in a schema), with a message
        saying why, if the engine cannot enforce ``constraint``. May take a while: call it off the event loop."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineEvent, None]:
        """Stream events for every candidate. Closing the iterator aborts the request."""
        ...

    def healthy(self) -> bool:
        """The engine's loop is alive and making progress."""
        ...

    async def keep_prefix(self, key: str, prompt: list[int]) -> None:
        """Compute ``prompt`` once and keep its computed state under ``key``, so that requests with
        ``prefix_key=key`` start from it. Only with ``capabilities.kept_prefixes``."""
        ...

    async def drop_prefix(self, key: str) -> None:
        """Forget what ``keep_prefix`` kept under ``key``. Only with ``capabilities.kept_prefixes``."""
        ...

    async def close(self) -> None: ...


def anchored_patterns(schema: Any) -> Any:
    """``schema`` with every ``pattern`` anchored (``^...$``): a pattern must match the whole string."""
    if isinstance(schema, dict):
        fixed = {key: anchored_patterns(value) for key, value in schema.items()}
        pattern = fixed.get("pattern")
        if isinstance(pattern, str):
            fixed["pattern"] = (
                ("" if pattern.startswith("^") else "^") + pattern + ("" if pattern.endswith("$") else "$")
            )
        return fixed
    if isinstance(schema, list):
        return [anchored_patterns(value) for value in schema]
    return schema
