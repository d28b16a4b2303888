"""A request as the scheduler runs it: the ``Job`` and its outbox of events, the ``Sequence`` of each
candidate, and the ``Slot`` (KV stream) each sequence runs in.

Threads: a job is made on the event loop and handed to the scheduler thread by ``Scheduler.submit``.
From then on only the scheduler thread touches its outbox, ``sequences`` and ``swapped`` (and every
``Slot`` and ``Sequence``); the event loop only reads ``events``, which the scheduler fills through
``loop.call_soon_threadsafe``. ``cancelled`` is a ``threading.Event``: the event loop sets it when
the consumer leaves, the scheduler when the event loop is gone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from localgem.engines.base import EngineEvent, FinishReason, GenerationRequest, TextDelta
from localgem.engines.llama.constraints import Grammar
from localgem.engines.llama.decoder import TokenSampler
from localgem.engines.llama.drafts import PromptLookup
from localgem.engines.repetition import RepetitionWatch
from localgem.engines.text import TextAssembler

if TYPE_CHECKING:
    from localgem.engines.llama.vision import MediaSpan

#: A stream's new text crosses to the event loop at most this often (its first two texts and its
#: last always at once). Each crossing wakes the event loop, which writes an SSE event; on two cores that
#: work runs between (or against) llama.cpp's threads. Chunks of a few tokens, not one, leave the CPU to
#: the model: Gemma 3 270M, one stream, 1.00 of llama-server at 20 ms and 1.03-1.05 at 100 ms (eight:
#: 1.09-1.11 and 1.13-1.16). Google's own streams carry far more a chunk (~50 tokens in its recordings).
FLUSH_INTERVAL = 0.1
#: A stream's first chunk carries its first token's text and leaves with the second token (the
#: service holds each text back by one, so the finish reason rides on the last chunk): online
#: requests keep priority over batch work until they have this many tokens.
FIRST_CHUNK_TOKENS = 2


@dataclass(eq=False)
class Job:
    """One request: its candidates run as sequences, one slot each.

    Events collect in an outbox (adjacent text of a candidate merged) and cross to the event loop
    in one list per flush (see FLUSH_INTERVAL).
    """

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    #: What enforces the request's constraint, built (and checked) before the job is submitted.
    grammar: Grammar | None = None
    events: asyncio.Queue[list[EngineEvent] | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    sequences: list[Sequence] = field(default_factory=list)
    #: A background job swapped out for an online one: its KV cells, until it gets a slot again.
    swapped: bytes | None = None
    #: The embeddings of the pictures in the prompt (a vision model's), in prompt order.
    media: list[MediaSpan] = field(default_factory=list)
    _outbox: list[EngineEvent] = field(default_factory=list)
    _flushed_at: float | None = None
    _flushes: int = 0
    _urgent: bool = False

    def emit(self, event: EngineEvent) -> None:
        last = self._outbox[-1] if self._outbox else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta) and last.index == event.index:
            self._outbox[-1] = TextDelta(event.index, last.text + event.text, last.logprobs + event.logprobs)
        else:
            self._outbox.append(event)
        self._urgent = self._urgent or not isinstance(event, TextDelta) or self._flushes < FIRST_CHUNK_TOKENS

    def flush(self, now: float | None = None) -> bool:
        """Send what collected; with ``now``, only if urgent or FLUSH_INTERVAL has passed.

        True while events are still held back."""
        if not self._outbox:
            return False
        if now is not None and not self._urgent and now - (self._flushed_at or 0.0) < FLUSH_INTERVAL:
            return True
        self._send(self._outbox)
        self._outbox = []
        self._flushed_at = time.monotonic()
        self._flushes += 1
        self._urgent = False
        return False

    def fail(self, error: BaseException) -> None:
        self.flush()
        self._send(error)

    def _send(self, item: list[EngineEvent] | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            self.cancelled.set()

    def expired(self, now: float) -> bool:
        return self.request.deadline is not None and now > self.request.deadline


@dataclass(eq=False)
class Slot:
    seq_id: int
    #: Tokens whose KV cells this slot's stream holds, computed as prompt (so reusable as such).
    cached: list[int] = field(default_factory=list)
    #: The LoRA adapter ``cached`` was computed under (cells of another adapter are not reusable).
    adapter: str | None = None
    sequence: Sequence | None = None
    last_used: float = 0.0


@dataclass(eq=False)
class Sequence:
    """One candidate: its tokens, and how many of them its slot has decoded."""

    job: Job
    index: int
    slot: Slot
    tokens: list[int]
    decoded: int
    sampler: TokenSampler
    text: TextAssembler
    #: Prompt cells another slot computes (or holds): this sequence waits for them, then starts from a copy
    #: (the first candidate's, for the other candidates of a request; see ``PrefixReuse.source``).
    follows: Source | None = None
    repeats: RepetitionWatch | None = None
    produced: int = 0
    done: bool = False
    #: Why it ends once its output, closed early, is complete (see ``TokenSampler.closed``).
    ending: FinishReason = FinishReason.MAX_TOKENS
    #: Guesses at its next token, for the decode steps that take a draft row (see ``drafts``).
    lookup: PromptLookup = field(default_factory=PromptLookup)

    @property
    def pending(self) -> int:
        return len(self.tokens) - self.decoded

    def prompt_cells(self) -> list[int]:
        """The tokens whose cells it holds computed as prompt (those decoded one by one are not reusable as such)."""
        return self.tokens[: min(self.decoded, len(self.job.request.prompt_tokens) - 1)]


@dataclass(frozen=True)
class Source:
    """The first ``cells`` cells of ``slot``, once ``sequence`` (running there, if not None) has computed them."""

    slot: Slot
    cells: int
    sequence: Sequence | None = None
