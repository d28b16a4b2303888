"""Admission: the wait queue, who gets a slot next (online requests before batch work, swapped-out
batch work before queued batch work), swapping batch work out for online requests, and the slots
freeing up when a job ends.

Two owners of state, two rules:

- ``WaitQueue`` is shared by the event loop (``submit``, ``close``) and the scheduler thread; its
  condition guards all of its state (see there).
- ``Admission`` (the slots, the running sequences, the swapped-out jobs) is the scheduler thread's
  alone, and takes no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from localgem import errors
from localgem.engines.base import Admitted, EngineEvent, EngineStats
from localgem.engines.llama.decoder import Decoder
from localgem.engines.llama.jobs import Job, Sequence, Slot, Source
from localgem.engines.llama.prefix_reuse import PrefixReuse, spare_first
from localgem.engines.repetition import RepetitionWatch
from localgem.engines.text import TextAssembler

log = logging.getLogger(__name__)

IDLE_WAIT = 0.5  # seconds the loop sleeps without work before it turns again
#: While online requests came in this recently (seconds), batch work leaves one slot (and the prompt
#: it keeps) free for them; else it takes every slot, and an online request swaps one out.
ONLINE_RECENT = 10.0


class WaitQueue:
    """Jobs waiting for a slot, in arrival order.

    ``condition`` guards ``jobs``, the online counters and ``closing``, and the writes of
    ``stats.queued_requests`` and ``stats.requests_rejected``. The scheduler thread also reads
    ``online_arrivals`` and ``online_seen`` without it: each is one value written under the lock,
    and a stale read only moves a decision to the next turn.
    """

    def __init__(self, *, max_queue: int, slots: int, stats: EngineStats) -> None:
        self.condition = threading.Condition()
        self.jobs: deque[Job] = deque()
        self.online_queued = 0  # online (not background) jobs in the queue
        self.online_seen = -ONLINE_RECENT  # when the last one was submitted
        self.online_arrivals = 0  # online jobs submitted so far
        self.closing = False
        self._max_queue = max_queue
        self._slots = slots
        self._stats = stats

    def submit(self, job: Job) -> None:
        if job.request.candidates > self._slots:
            raise errors.InvalidArgument(
                f"candidateCount {job.request.candidates} exceeds the {self._slots} parallel slots of this model."
            )
        with self.condition:
            # Batch work queued ahead does not count against online requests.
            waiting = len(self.jobs) if job.request.background else self.online_queued
            if waiting >= self._max_queue:
                self._stats.requests_rejected += 1
                raise errors.Unavailable(
                    "The model is overloaded: all slots are busy and the wait queue is full. Please try again later."
                )
            self.jobs.append(job)
            if not job.request.background:
                self.online_queued += 1
                self.online_arrivals += 1
                self.online_seen = time.monotonic()
            self._stats.queued_requests = len(self.jobs)
            self.condition.notify()

    def wake(self) -> None:
        with self.condition:
            self.condition.notify()

    def close(self) -> None:
        with self.condition:
            self.closing = True
            self.condition.notify()

    def between_turns(self, busy: bool) -> Literal["close", "idle", "turn"]:
        """Closing; or nothing queued nor ``busy``: waits up to IDLE_WAIT (or a submit) and says so;
        else time for a turn."""
        with self.condition:
            if self.closing:
                return "close"
            if not self.jobs and not busy:
                self.condition.wait(IDLE_WAIT)
                return "idle"
            return "turn"

    def next(self, paused: bool) -> tuple[Job | None, Job | None]:
        """The first online job, and the job to admit next: that one, else (unless batch work is
        ``paused``, which goes first) the first queued."""
        with self.condition:
            online = next((j for j in self.jobs if not j.request.background), None) if self.online_queued else None
            return online, online or (self.jobs[0] if self.jobs and not paused else None)

    def take(self, job: Job) -> None:
        with self.condition:
            self._take(job)

    def remove_gone(self, now: float) -> list[Job]:
        """Takes out the jobs whose client left or whose deadline passed."""
        with self.condition:
            gone = [job for job in self.jobs if job.cancelled.is_set() or job.expired(now)]
            for job in gone:
                self._take(job)
        return gone

    def online_recently(self, now: float) -> bool:
        return now - self.online_seen < ONLINE_RECENT

    def _take(self, job: Job) -> None:
        """Out of the queue (the caller holds the condition)."""
        self.jobs.remove(job)
        self.online_queued -= not job.request.background
        self._stats.queued_requests = len(self.jobs)


def swap_victims(running: list[Sequence], needed: int) -> list[Job] | None:
    """The running batch jobs to swap out for ``needed`` slots: those that did least so far, among jobs
    of one candidate; None when there are not enough."""
    jobs = {s.job for s in running if s.job.request.background and s.job.request.candidates == 1}
    victims = sorted(jobs, key=lambda job: job.sequences[0].decoded)[:needed]
    return victims if len(victims) == needed else None


def candidate_slots(first: Slot, free: list[Slot], n: int) -> list[Slot]:
    """Slots for a request's other ``n`` candidates: the free neighbours of ``first`` (llama.cpp decodes a run of
    neighbouring streams in one pass, and each stream apart from its neighbours in a pass of its own), then the free
    slots whose caches matter least."""
    by_id = {slot.seq_id: slot for slot in free}
    chosen: list[Slot] = []
    low = high = first.seq_id
    while len(chosen) < n and (high + 1 in by_id or low - 1 in by_id):
        if high + 1 in by_id:
            high += 1
            chosen.append(by_id[high])
        else:
            low -= 1
            chosen.append(by_id[low])
    rest = sorted((slot for slot in free if slot is not first and slot not in chosen), key=spare_first)
    return chosen + rest[: n - len(chosen)]


class Admission:
    """Moves jobs from the queue into free slots, and frees their slots when they end.

    Owns ``slots``, ``running`` (the sequences in slots) and ``paused`` (batch jobs swapped out for
    online ones, resumed first), and each job's ``sequences`` and ``swapped``: all touched by the
    scheduler thread only.
    """

    def __init__(
        self,
        decoder: Decoder,
        queue: WaitQueue,
        reuse: PrefixReuse,
        *,
        stats: EngineStats,
        emit: Callable[[Job, EngineEvent], None],
        repetition_stop: int = 0,
    ) -> None:
        self._decoder = decoder
        self._queue = queue
        self._reuse = reuse
        self._stats = stats
        self._emit = emit
        self._repetition_stop = repetition_stop
        self.slots = [Slot(i) for i in range(decoder.slots)]
        self.running: list[Sequence] = []
        self.paused: deque[Job] = deque()

    def admit(self) -> None:
        """Online requests first, in arrival order, swapping out batch work for them if no slot is free;
        then swapped-out batch work, then queued batch work, as slots free up (see ONLINE_RECENT)."""
        while True:
            free = [slot for slot in self.slots if slot.sequence is None]
            online, job = self._queue.next(paused=bool(self.paused))
            if online is not None and online.request.candidates > len(free):
                if not self._swap_out(online.request.candidates - len(free)):
                    return
                continue
            kept = online is None and len(self.slots) > 1 and self._queue.online_recently(time.monotonic())
            spare = len(free) - kept
            if job is None and self.paused and spare > 0:
                self._swap_in(self.paused.popleft(), free)
                continue
            if job is None or job.request.candidates > spare:
                return
            self._queue.take(job)
            self._start(job, free)

    def _swap_out(self, needed: int) -> bool:
        """Frees ``needed`` slots for an online request by pausing running batch jobs: their cells are
        saved and loaded again when a slot frees up."""
        victims = swap_victims(self.running, needed)
        if victims is None:
            return False
        for job in victims:
            sequence = job.sequences[0]
            job.swapped = self._decoder.save_sequence(sequence.slot.seq_id) if sequence.decoded else b""
            self.running.remove(sequence)
            self._reuse.vacate(sequence)
            self.paused.append(job)
            self._stats.swapped_out += 1
        return True

    def _swap_in(self, job: Job, free: list[Slot]) -> None:
        sequence = job.sequences[0]
        slot = min(free, key=spare_first)
        slot.cached = []
        state, job.swapped = job.swapped, None
        self._decoder.forget(slot.seq_id)
        if state is None or (state and not self._decoder.load_sequence(slot.seq_id, state)):
            # Its output so far cannot be continued, nor restarted under the same caller: it fails, and
            # a batch runner queues it again.
            log.warning("a swapped-out request did not fit back into the KV cache")
            job.fail(errors.Unavailable("The request was paused for online traffic and could not resume."))
            self.release(job)
            return
        sequence.slot = slot
        slot.sequence = sequence
        self.running.append(sequence)

    def _start(self, job: Job, free: list[Slot]) -> None:
        request = job.request
        prompt = request.prompt_tokens
        if request.adapter is not None:
            try:
                self._decoder.load_adapter(request.adapter)
            except errors.ApiError as exc:  # this request fails alone
                job.fail(exc)
                return
        first, reused = self._reuse.choose(free, prompt, request.prefix_key, request.adapter)
        source = self._reuse.source(self.slots, first, prompt, reused, request.adapter, request.background)
        slots = [first] + candidate_slots(first, free, request.candidates - 1)
        self._stats.requests_started += 1
        self._stats.prompt_tokens_reused += reused
        self._stats.last_request_tokens_generated = 0
        leader: Sequence | None = None
        for index, slot in enumerate(slots):
            kept = reused if leader is None else 0
            self._decoder.forget(slot.seq_id, kept)
            slot.cached = slot.cached[:kept]
            slot.adapter = request.adapter
            seed = None if request.sampling.seed is None else request.sampling.seed + index
            sequence = Sequence(
                job=job,
                index=index,
                slot=slot,
                tokens=list(prompt),
                decoded=kept,
                sampler=self._decoder.sampler(request.sampling, seed, request.max_tokens, job.grammar),
                text=TextAssembler(request.stop_sequences),
                # The other candidates start from a copy of the first one's prompt cells.
                follows=source if leader is None else Source(first, len(prompt) - 1, leader),
                repeats=RepetitionWatch(self._repetition_stop) if self._repetition_stop else None,
            )
            slot.sequence = sequence
            leader = leader or sequence
            job.sequences.append(sequence)
            self.running.append(sequence)
        self._emit(job, Admitted(cached_tokens=reused))

    def release(self, job: Job) -> None:
        """A job ends: its slots free up, keeping what they decoded as prefix cache."""
        if job in self.paused:
            self.paused.remove(job)
        for sequence in job.sequences:
            sequence.sampler.close()
            if sequence.slot.sequence is not sequence:
                continue  # swapped out: it holds no slot
            if sequence in self.running:
                self.running.remove(sequence)
            self._reuse.vacate(sequence)
            key = job.request.keep_as
            if key is not None and sequence.index == 0:
                self._reuse.keep(key, sequence.slot)
        job.sequences.clear()
        self._stats.active_sequences = len(self.running)

    def cells_used(self) -> int:
        """KV cells the slots hold: a running sequence's decoded tokens, else the prompt cells a slot keeps."""
        return sum(slot.sequence.decoded if slot.sequence is not None else len(slot.cached) for slot in self.slots)

    def reset(self) -> None:
        """After a failed turn (whose jobs are released): every slot's cells go."""
        self._decoder.clear()
        for slot in self.slots:
            slot.cached = []
