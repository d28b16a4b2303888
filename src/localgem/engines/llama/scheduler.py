"""Continuous batching over one llama.cpp context.

One thread owns the context and turns a loop. Each turn it drops requests whose client left or
whose deadline passed, admits queued requests into free slots, decodes one token for every
running sequence in a single batch, and feeds prompts in chunks (one sequence per decode call,
within a per-turn budget), so a long prompt never stalls the running streams for long.

Each slot is one KV stream (see ``NativeModel``). A slot keeps the tokens of its last request
after it ends: a new prompt that starts the same way (the next turn of a chat, a shared system
prompt) takes that slot and only computes the rest. Candidates of one request start from a
copy of the first candidate's prompt cells.

Batch invariance rules this module keeps, so that seeded output does not depend on the load
(llama.cpp's kernels round differently for one row, a few, or many): prompts are decoded in
chunks that start at multiples of the chunk size, whatever is reused, so a prompt is always cut
the same way; chunks hold at least MIN_CHUNK tokens; a prompt's last token is always decoded in
a decode step, never in a chunk; and only cells computed as prompt (not decoded one by one) are
reused by later prompts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from localgem import errors
from localgem.engines.base import (
    Admitted,
    CandidateFinished,
    DeadlineReached,
    EngineEvent,
    EngineStats,
    FinishReason,
    GenerationRequest,
    TextDelta,
)
from localgem.engines.llama.native import BatchItem, NativeModel, Sampler
from localgem.engines.llama.prefixes import KeptPrefix, PrefixStore
from localgem.engines.repetition import RepetitionWatch
from localgem.engines.text import TextAssembler

log = logging.getLogger(__name__)

IDLE_WAIT = 0.5  # seconds the loop sleeps without work before it turns again
#: Prompt chunks are never shorter (but for prompts that short): llama.cpp's quantized matmuls
#: switch kernels below four rows.
MIN_CHUNK = 4
#: Prompt tokens decoded per turn at most (in whole chunks), so running streams get a decode step
#: between them.
PREFILL_TOKENS_PER_TURN = 256
#: A stream's new text crosses to the event loop at most this often (its first two texts and its
#: last always at once): fewer, slightly larger chunks leave the CPU to the model, as Google's do.
FLUSH_INTERVAL = 0.02
#: A stream's first chunk carries its first token's text and leaves with the second token (the
#: service holds each text back by one, so the finish reason rides on the last chunk): online
#: requests keep priority over batch work until they have this many tokens.
FIRST_CHUNK_TOKENS = 2
#: While online requests came in this recently (seconds), batch work leaves one slot (and the prompt
#: it keeps) free for them; else it takes every slot, and an online request swaps one out.
ONLINE_RECENT = 10.0


@dataclass(eq=False)
class Job:
    """One request: its candidates run as sequences, one slot each.

    Events collect in an outbox (adjacent text of a candidate merged) and cross to the event loop
    in one list per flush (see FLUSH_INTERVAL).
    """

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[list[EngineEvent] | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    sequences: list[Sequence] = field(default_factory=list)
    #: A background job swapped out for an online one: its KV cells, until it gets a slot again.
    swapped: bytes | None = None
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
    sampler: Sampler
    text: TextAssembler
    #: Candidates after the first wait for its prompt cells, then start from a copy of them.
    leader: Sequence | None = None
    repeats: RepetitionWatch | None = None
    produced: int = 0
    done: bool = False
    #: Why it ends once its output, closed early, is complete (see ``Sampler.closed``).
    ending: FinishReason = FinishReason.MAX_TOKENS

    @property
    def pending(self) -> int:
        return len(self.tokens) - self.decoded


class Scheduler:
    def __init__(
        self,
        native: NativeModel,
        *,
        max_queue: int,
        prefill_chunk: int,
        stats: EngineStats,
        prefixes: PrefixStore | None = None,
        niceness: int = 0,
        reuse_prefixes: bool = True,
        repetition_stop: int = 0,
    ) -> None:
        self._native = native
        self._repetition_stop = repetition_stop
        self._reuse = reuse_prefixes
        self._niceness = niceness
        self._prefixes = prefixes
        self._max_queue = max_queue
        self._chunk = max(MIN_CHUNK, prefill_chunk)
        self.stats = stats
        self._slots = [Slot(i) for i in range(native.slots)]
        self._queue: deque[Job] = deque()
        self._online_queued = 0  # online (not background) jobs in the queue
        self._online_seen = -ONLINE_RECENT  # when the last one was submitted
        self._online_arrivals = 0  # online jobs submitted so far
        self._paused: deque[Job] = deque()  # background jobs swapped out for online ones; resumed first
        self._running: list[Sequence] = []
        self._touched: set[Job] = set()  # jobs with events to flush at the end of the turn
        self._condition = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="localgem scheduler", daemon=True)
        self._thread.start()

    # -- called from the event loop -------------------------------------------------------------

    def submit(self, job: Job) -> None:
        if job.request.candidates > len(self._slots):
            raise errors.InvalidArgument(
                f"candidateCount {job.request.candidates} exceeds the {len(self._slots)} parallel slots of this model."
            )
        with self._condition:
            # Batch work queued ahead does not count against online requests.
            waiting = len(self._queue) if job.request.background else self._online_queued
            if waiting >= self._max_queue:
                self.stats.requests_rejected += 1
                raise errors.Unavailable(
                    "The model is overloaded: all slots are busy and the wait queue is full. Please try again later."
                )
            self._queue.append(job)
            if not job.request.background:
                self._online_queued += 1
                self._online_arrivals += 1
                self._online_seen = time.monotonic()
            self.stats.queued_requests = len(self._queue)
            self._condition.notify()

    def wake(self) -> None:
        with self._condition:
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join()

    def healthy(self, now: float) -> bool:
        return self._thread.is_alive() and now - self.stats.last_progress < 30

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        if self._niceness:
            # llama.cpp's worker threads are started from this one and inherit its niceness.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)
        while True:
            with self._condition:
                if self._closing:
                    break
                if not self._queue and not self._running and not self._paused:
                    self._condition.wait(IDLE_WAIT)
                    self.stats.last_progress = time.monotonic()
                    continue
            try:
                self._turn()
            except Exception as exc:  # the running requests fail; the loop keeps serving
                log.exception("scheduler turn failed")
                self._fail_running(
                    exc if isinstance(exc, errors.ApiError) else errors.Internal(f"Generation failed: {exc}")
                )
            self.stats.last_progress = time.monotonic()
        self._fail_running(errors.Unavailable("The server is shutting down."))
        for job in [*self._queue, *self._paused]:
            job.fail(errors.Unavailable("The server is shutting down."))

    def _turn(self) -> None:
        """Online prompts are read before the decode step, so their first token comes in the same
        turn. Until an online request has its first chunk, batch sequences wait: their prompts are
        not read and they sit out the decode step. An online request that arrives meanwhile stops the
        reading of batch prompts, to be admitted at the next turn."""
        self._drop_abandoned()
        self._admit()
        arrivals = self._online_arrivals
        budget = self._prefill(max(PREFILL_TOKENS_PER_TURN, self._chunk), background=False)
        online_first = any(
            not s.job.request.background and (s.pending > 1 or s.produced < FIRST_CHUNK_TOKENS) for s in self._running
        )
        self._decode_step(online_only=online_first)
        if not online_first:
            self._prefill(budget, background=True, arrivals=arrivals)
        self.stats.active_sequences = len(self._running)
        now = time.monotonic()
        self._touched = {job for job in self._touched if job.flush(now)}

    def _fail_running(self, failure: errors.ApiError) -> None:
        for job in {s.job for s in self._running}:
            job.fail(failure)
            self._release(job)
        self._touched.clear()
        self._native.clear()
        for slot in self._slots:
            slot.cached = []

    def _drop_abandoned(self) -> None:
        """Requests whose client left or whose deadline passed stop here, queued or running."""
        now = time.monotonic()
        with self._condition:
            gone = [job for job in self._queue if job.cancelled.is_set() or job.expired(now)]
            for job in gone:
                self._take(job)
        running = {s.job for s in self._running}
        gone += [job for job in [*running, *self._paused] if job.cancelled.is_set() or job.expired(now)]
        for job in gone:
            self.stats.requests_aborted += 1
            if not job.cancelled.is_set():
                self._emit(job, DeadlineReached())
            self._release(job)

    # -- admission and the prefix cache ---------------------------------------------------------

    def _admit(self) -> None:
        """Online requests first, in arrival order, swapping out batch work for them if no slot is free;
        then swapped-out batch work, then queued batch work, as slots free up (see ONLINE_RECENT)."""
        while True:
            free = [slot for slot in self._slots if slot.sequence is None]
            with self._condition:
                online = (
                    next((j for j in self._queue if not j.request.background), None) if self._online_queued else None
                )
                job = online or (self._queue[0] if self._queue and not self._paused else None)
            if online is not None and online.request.candidates > len(free):
                if not self._swap_out(online.request.candidates - len(free)):
                    return
                continue
            kept = online is None and len(self._slots) > 1 and time.monotonic() - self._online_seen < ONLINE_RECENT
            spare = len(free) - kept
            if job is None and self._paused and spare > 0:
                self._swap_in(self._paused.popleft(), free)
                continue
            if job is None or job.request.candidates > spare:
                return
            with self._condition:
                self._take(job)
            self._start(job, free)

    def _take(self, job: Job) -> None:
        """Out of the queue (the caller holds the condition)."""
        self._queue.remove(job)
        self._online_queued -= not job.request.background
        self.stats.queued_requests = len(self._queue)

    def _swap_out(self, needed: int) -> bool:
        """Frees ``needed`` slots for an online request by pausing running batch jobs (those that
        did least so far): their cells are saved and loaded again when a slot frees up."""
        jobs = {s.job for s in self._running if s.job.request.background and s.job.request.candidates == 1}
        victims = sorted(jobs, key=lambda job: job.sequences[0].decoded)[:needed]
        if len(victims) < needed:
            return False
        for job in victims:
            sequence = job.sequences[0]
            job.swapped = self._native.save_sequence(sequence.slot.seq_id) if sequence.decoded else b""
            self._running.remove(sequence)
            self._free_slot(sequence)
            self._paused.append(job)
            self.stats.swapped_out += 1
        return True

    def _swap_in(self, job: Job, free: list[Slot]) -> None:
        sequence = job.sequences[0]
        slot = min(free, key=_spare_first)
        slot.cached = []
        state, job.swapped = job.swapped, None
        self._native.forget(slot.seq_id)
        if state is None or (state and not self._native.load_sequence(slot.seq_id, state)):
            # Its output so far cannot be continued, nor restarted under the same caller: it fails, and
            # a batch runner queues it again.
            log.warning("a swapped-out request did not fit back into the KV cache")
            job.fail(errors.Unavailable("The request was paused for online traffic and could not resume."))
            self._release(job)
            return
        sequence.slot = slot
        slot.sequence = sequence
        self._running.append(sequence)

    def _start(self, job: Job, free: list[Slot]) -> None:
        request = job.request
        prompt = request.prompt_tokens
        first, reused = self._best_slot(free, prompt)
        if request.prefix_key is not None and self._reuse:
            first, reused = self._restore(request.prefix_key, free, prompt, first, reused)
        others = sorted((slot for slot in free if slot is not first), key=_spare_first)
        slots = [first] + others[: request.candidates - 1]
        self.stats.requests_started += 1
        self.stats.prompt_tokens_reused += reused
        self.stats.last_request_tokens_generated = 0
        leader: Sequence | None = None
        for index, slot in enumerate(slots):
            kept = reused if leader is None else 0
            self._native.forget(slot.seq_id, kept)
            slot.cached = slot.cached[:kept]
            seed = None if request.sampling.seed is None else request.sampling.seed + index
            sequence = Sequence(
                job=job,
                index=index,
                slot=slot,
                tokens=list(prompt),
                decoded=kept,
                sampler=Sampler(self._native, request.sampling, seed, request.max_tokens, request.grammar),
                text=TextAssembler(request.stop_sequences),
                leader=leader,
                repeats=RepetitionWatch(self._repetition_stop) if self._repetition_stop else None,
            )
            slot.sequence = sequence
            leader = leader or sequence
            job.sequences.append(sequence)
            self._running.append(sequence)
        self._emit(job, Admitted(cached_tokens=reused))

    def _best_slot(self, free: list[Slot], prompt: list[int]) -> tuple[Slot, int]:
        """The free slot that already holds the longest start of ``prompt``; else an empty one,
        else the one used longest ago (so useful caches live longest).

        A slot is taken for what it shares only if that is at least half of what it holds (as
        llama-server's slot similarity): a prompt that merely starts like a long cached one (the
        same chat template, another document) goes elsewhere and leaves that cache alone.
        What is reused ends where a chunk of the prompt would start, and leaves at least the
        prompt's last token to decode.
        """
        best, reused = min(free, key=_spare_first), 0
        for slot in free if self._reuse else ():
            n = self._reusable(slot.cached, prompt)
            if n > reused and 2 * _common_prefix(slot.cached, prompt, len(prompt)) >= len(slot.cached):
                best, reused = slot, n
        return best, reused

    def _reusable(self, cached: list[int] | tuple[int, ...], prompt: list[int]) -> int:
        """How many of ``cached``'s cells ``prompt`` may start from: a chunk boundary of both prompts' cuts,
        so that what is computed next is the very chunk a cold start computes. (A cached slot's cells
        always end where a chunk of its prompt ended, so ``len(cached)`` stands for that prompt's end.)"""
        last = len(prompt) - 1
        n = _common_prefix(cached, prompt, last) // self._chunk * self._chunk
        while n and not (self._boundary(n, last) and self._boundary(n, len(cached))):
            n -= self._chunk
        return n

    def _boundary(self, position: int, end: int) -> bool:
        """Does a chunk of a prompt cut up to ``end`` end at ``position``?"""
        return position == end or (position % self._chunk == 0 and end - position >= MIN_CHUNK)

    def _restore(self, key: str, free: list[Slot], prompt: list[int], first: Slot, reused: int) -> tuple[Slot, int]:
        """A kept prefix (a cached content's cells) goes into a free slot when it covers more of the
        prompt than any slot holds; the slot given up is the one a fresh prompt would take."""
        kept = self._prefixes.get(key) if self._prefixes is not None else None
        if kept is None or (n := self._reusable(kept.tokens, prompt)) <= reused:
            return first, reused
        slot = min(free, key=_spare_first)
        slot.cached = []
        if not self._native.load_sequence(slot.seq_id, kept.state):
            log.warning("the kept state of %s did not load; computing its prompt instead", key)
            return self._best_slot(free, prompt)
        slot.cached = list(kept.tokens)
        self.stats.prefixes_restored += 1
        return slot, n

    def _release(self, job: Job) -> None:
        """A job ends: its slots free up, keeping what they decoded as prefix cache."""
        if job in self._paused:
            self._paused.remove(job)
        for sequence in job.sequences:
            sequence.sampler.close()
            if sequence.slot.sequence is not sequence:
                continue  # swapped out: it holds no slot
            if sequence in self._running:
                self._running.remove(sequence)
            self._free_slot(sequence)
            key = job.request.keep_as
            if key is not None and sequence.index == 0 and self._prefixes is not None and sequence.slot.cached:
                state = self._native.save_sequence(sequence.slot.seq_id)
                self._prefixes.put(key, KeptPrefix(tuple(sequence.slot.cached), state))
        job.sequences.clear()
        self.stats.active_sequences = len(self._running)

    def _free_slot(self, sequence: Sequence) -> None:
        """The sequence leaves its slot, which keeps the cells computed as prompt (those decoded one
        by one are not reusable as prompt)."""
        kept = min(sequence.decoded, len(sequence.job.request.prompt_tokens) - 1)
        self._native.forget(sequence.slot.seq_id, kept)
        sequence.slot.cached = sequence.tokens[:kept]
        sequence.slot.sequence = None
        sequence.slot.last_used = time.monotonic()

    def _emit(self, job: Job, event: EngineEvent) -> None:
        job.emit(event)
        self._touched.add(job)

    # -- decoding -------------------------------------------------------------------------------

    def _decode_step(self, online_only: bool = False) -> None:
        """One token for every sequence whose prompt is in its slot but for its last token."""
        for sequence in self._running:
            leader = sequence.leader
            if leader is not None and sequence.decoded == 0 and leader.decoded >= len(sequence.tokens) - 1:
                # The first candidate's prompt is in: start from a copy of its cells, minus any it
                # has added since.
                self._native.copy(leader.slot.seq_id, sequence.slot.seq_id)
                self._native.forget(sequence.slot.seq_id, len(sequence.tokens) - 1)
                sequence.decoded = len(sequence.tokens) - 1
        ready = sorted(
            (s for s in self._running if s.pending == 1 and not (online_only and s.job.request.background)),
            key=lambda s: s.slot.seq_id,
        )
        if not ready:
            return
        # In slot order: llama.cpp decodes each run of neighbouring streams in one pass.
        if not self._native.decode([BatchItem(s.slot.seq_id, s.tokens[-1], s.decoded, True) for s in ready]):
            raise errors.ResourceExhausted("The KV cache of this model is full.")
        self.stats.decode_steps += 1
        self.stats.decode_rows += len(ready)
        for row, sequence in enumerate(ready):
            sequence.decoded += 1
            self._sample(sequence, row)

    def _prefill(self, budget: int, *, background: bool, arrivals: int = 0) -> int:
        """Prompt chunks of online or of batch sequences, one sequence per decode call, within a
        token budget; returns what is left of it. Batch prompts stop as soon as an online request
        arrives after ``arrivals``, so it is admitted at the next turn."""
        for sequence in list(self._running):
            if sequence.job.request.background != background or sequence.leader is not None:
                continue
            while budget > 0 and sequence.pending > 1:
                if background and self._online_arrivals != arrivals:
                    return budget
                stop = self._chunk_end(sequence.decoded, len(sequence.tokens) - 1)
                chunk = sequence.tokens[sequence.decoded : stop]
                items = [
                    BatchItem(sequence.slot.seq_id, token, sequence.decoded + i, False) for i, token in enumerate(chunk)
                ]
                if not self._native.decode(items):
                    raise errors.ResourceExhausted("The KV cache of this model is full.")
                sequence.decoded = stop
                self.stats.prompt_tokens_evaluated += len(chunk)
                budget -= len(chunk)
        return budget

    def _chunk_end(self, start: int, end: int) -> int:
        """Chunks end at multiples of the chunk size; a short tail joins the chunk before it."""
        stop = min((start // self._chunk + 1) * self._chunk, end)
        return end if end - stop < MIN_CHUNK else stop

    def _sample(self, sequence: Sequence, row: int) -> None:
        request = sequence.job.request
        token = sequence.sampler.sample(row)
        step = self._native.step_logprobs(row, token, request.logprobs) if request.logprobs is not None else None
        if self._native.is_end_of_generation(token):
            self._finish(sequence, sequence.ending if sequence.sampler.closed else FinishReason.STOP)
            return
        sequence.produced += 1
        self.stats.tokens_generated += 1
        self.stats.last_request_tokens_generated += 1
        released = sequence.text.push(self._native.piece(token), step)
        if released.text or released.logprobs:
            self._emit(sequence.job, TextDelta(sequence.index, released.text, released.logprobs))
        if released.stopped:
            self._finish(sequence, FinishReason.STOP, flush=False)
        elif sequence.sampler.closed:  # closed early (to fit the budget, or out of a loop), and complete
            self._finish(sequence, sequence.ending)
        elif sequence.produced >= request.max_tokens or len(sequence.tokens) + 1 >= self._native.info.context_length:
            self._finish(sequence, FinishReason.MAX_TOKENS)
        else:
            sequence.tokens.append(token)
            if sequence.repeats is not None and (loop := sequence.repeats.looping(sequence.tokens)):
                self._stop_looping(sequence, loop)

    def _stop_looping(self, sequence: Sequence, loop: int) -> None:
        """An output stuck in a loop ends. A constrained one ends where its grammar lets it end (after a
        repeated function call, say); one that loops where it cannot end (items of an array) is given
        its shortest valid completion once the loop has gone on for twice as long."""
        sampler = sequence.sampler
        if sampler.may_end():
            self._finish(sequence, FinishReason.REPETITION)
        elif loop >= 2 * self._repetition_stop:
            sequence.ending = FinishReason.REPETITION
            if not sampler.close_now() or sampler.closed:
                self._finish(sequence, FinishReason.REPETITION)

    def _finish(self, sequence: Sequence, reason: FinishReason, flush: bool = True) -> None:
        job = sequence.job
        if flush:
            tail = sequence.text.finish()
            if tail.text or tail.logprobs:
                self._emit(job, TextDelta(sequence.index, tail.text, tail.logprobs))
        self._emit(job, CandidateFinished(sequence.index, reason, sequence.produced))
        sequence.done = True
        if all(s.done for s in job.sequences):
            self.stats.requests_finished += 1
            self._release(job)


def _spare_first(slot: Slot) -> tuple[bool, float, int]:
    """Slots to give away first: empty ones, then the one whose cache was used longest ago."""
    return bool(slot.cached), slot.last_used, slot.seq_id


def _common_prefix(a: list[int] | tuple[int, ...], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
