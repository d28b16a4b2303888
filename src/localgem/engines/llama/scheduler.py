"""Continuous batching over one llama.cpp context: the decode loop.

One thread owns the context and turns a loop. Each turn it drops requests whose client left or
whose deadline passed, admits queued requests into free slots (see ``admission``), decodes one token
for every running sequence in a single batch, and feeds prompts in chunks (one sequence per decode
call, within a per-turn budget), so a long prompt never stalls the running streams for long.

Each slot is one KV stream (see ``NativeModel``). A slot keeps the tokens of its last request
after it ends: a new prompt that starts the same way (the next turn of a chat, a shared system
prompt) takes that slot and only computes the rest (see ``prefix_reuse``). A prompt whose start
another slot holds or is computing (requests that share a system prompt and arrive together; the
other candidates of a request) waits for those cells and starts from a copy of them.

Batch invariance rules this module keeps, so that seeded output does not depend on the load
(llama.cpp's kernels round differently for one row, a few, or many): prompts are decoded in
chunks that start at multiples of the chunk size, whatever is reused, so a prompt is always cut
the same way (a call takes several whole chunks, which rounds alike, and ends on a multiple of 8
cells: see ``NativeModel._padding``); chunks hold at least MIN_CHUNK tokens; a prompt's last token
is always decoded in a decode step, never in a chunk; and only cells computed as prompt (not
decoded one by one) are reused by later prompts, in their own slot or copied into another (a copy
holds the very numbers, at cells [0, n) of its stream).

Threads and locks: the event loop calls ``submit``, ``wake``, ``close`` and ``healthy``; all else
runs on the scheduler thread. The only lock is the wait queue's condition (see ``WaitQueue``); the
slots, the running sequences and the jobs' outboxes belong to the scheduler thread alone (see
``Admission`` and ``jobs``). ``stats`` is written by the scheduler thread (and by ``submit`` under the
queue's lock) and read by anyone without a lock: plain counters, whose reads may be a turn old.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from localgem import errors
from localgem.engines.base import (
    Admitted,
    CandidateFinished,
    DeadlineReached,
    EngineEvent,
    EngineStats,
    FinishReason,
    TextDelta,
)
from localgem.engines.llama.admission import Admission, WaitQueue
from localgem.engines.llama.decoder import BatchItem, Decoder, padded_end
from localgem.engines.llama.jobs import FIRST_CHUNK_TOKENS, Job, Sequence
from localgem.engines.llama.prefix_reuse import MIN_CHUNK, PrefixReuse, chunk_end
from localgem.engines.llama.prefixes import PrefixStore

if TYPE_CHECKING:
    from localgem.engines.llama.vision import MediaSpan

__all__ = ["MIN_CHUNK", "Job", "Scheduler"]

log = logging.getLogger(__name__)

#: Prompt tokens decoded per turn at most (in whole chunks), so running streams get a decode step
#: between them.
PREFILL_TOKENS_PER_TURN = 256
#: Prompt tokens one decode call takes at most: the neighbouring chunks of one prompt go in one call (llama.cpp
#: reads 256 rows at once ~1.2-1.5x as fast as 16 at a time), which changes no number: while ``batch_invariant``
#: holds its kernels round each row alike whatever else the call holds (see ``NativeModel``; tested cold and warm
#: by the reproducibility tests).
PREFILL_TOKENS_PER_CALL = 256
#: Prompt tokens per turn, and per call, while no sequence waits for a decode step: llama.cpp reads a prompt ~3%
#: faster in calls of 480 rows than of 256. Within the context's batch of 512 rows with a short tail and the
#: filler rows (see ``NativeModel._padding``).
PREFILL_TOKENS_ALONE = 480


class Scheduler:
    def __init__(
        self,
        decoder: Decoder,
        *,
        max_queue: int,
        prefill_chunk: int,
        stats: EngineStats,
        prefixes: PrefixStore | None = None,
        niceness: int = 0,
        reuse_prefixes: bool = True,
        repetition_stop: int = 0,
        prefill_call: int = PREFILL_TOKENS_PER_CALL,
        prefill_call_alone: int = PREFILL_TOKENS_ALONE,
    ) -> None:
        self._decoder = decoder
        self._repetition_stop = repetition_stop
        self._niceness = niceness
        self._chunk = max(MIN_CHUNK, prefill_chunk)
        self._call = max(self._chunk, prefill_call)
        self._call_alone = max(self._call, prefill_call_alone)
        self.stats = stats
        self._queue = WaitQueue(max_queue=max_queue, slots=decoder.slots, stats=stats)
        self._reuse = PrefixReuse(decoder, chunk=self._chunk, stats=stats, prefixes=prefixes, reuse=reuse_prefixes)
        self._admission = Admission(
            decoder, self._queue, self._reuse, stats=stats, emit=self._emit, repetition_stop=repetition_stop
        )
        self._running = self._admission.running  # the same list: Admission adds and removes, the loop decodes
        self._touched: set[Job] = set()  # jobs with events to flush at the end of the turn
        self._adapter: str | None = None  # the LoRA adapter the decoder applies now
        self._thread = threading.Thread(target=self._loop, name="localgem scheduler", daemon=True)
        self._thread.start()

    # -- called from the event loop -------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queues a job; InvalidArgument for more candidates than slots, Unavailable when the queue is full."""
        self._queue.submit(job)

    def wake(self) -> None:
        self._queue.wake()

    def close(self) -> None:
        self._queue.close()
        self._thread.join()

    def healthy(self, now: float) -> bool:
        return self._thread.is_alive() and now - self.stats.last_progress < 30

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        if self._niceness:
            # llama.cpp's worker threads are started from this one and inherit its niceness.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)
        while True:
            step = self._queue.between_turns(busy=bool(self._running or self._admission.paused))
            if step == "close":
                break
            if step == "idle":
                self.stats.last_progress = time.monotonic()
                continue
            try:
                self._turn()
            except Exception as exc:  # the running requests fail; the loop keeps serving
                log.exception("scheduler turn failed")
                self._fail_running(
                    exc if isinstance(exc, errors.ApiError) else errors.Internal(f"Generation failed: {exc}")
                )
            self.stats.kv_cells_used = self._admission.cells_used()
            self.stats.last_progress = time.monotonic()
        self._fail_running(errors.Unavailable("The server is shutting down."))
        for job in [*self._queue.jobs, *self._admission.paused]:
            job.fail(errors.Unavailable("The server is shutting down."))

    def _turn(self) -> None:
        """Online prompts are read before the decode step, so their first token comes in the same
        turn. Until an online request has its first chunk, batch sequences wait: their prompts are
        not read and they sit out the decode step. An online request that arrives meanwhile stops the
        reading of batch prompts, to be admitted at the next turn."""
        self._drop_abandoned()
        self._admission.admit()
        arrivals = self._queue.online_arrivals
        # While no sequence waits for a decode step, prompts are read in larger calls and turns.
        if any(s.pending == 1 for s in self._running):
            call, budget = self._call, PREFILL_TOKENS_PER_TURN
        else:
            call = budget = self._call_alone
        budget = self._prefill(max(budget, self._chunk), background=False, call=call)
        online_first = any(
            not s.job.request.background and (s.pending > 1 or s.produced < FIRST_CHUNK_TOKENS) for s in self._running
        )
        self._decode_step(online_only=online_first)
        if not online_first:
            self._prefill(budget, background=True, arrivals=arrivals, call=call)
        self.stats.active_sequences = len(self._running)
        now = time.monotonic()
        self._touched = {job for job in self._touched if job.flush(now)}

    def _fail_running(self, failure: errors.ApiError) -> None:
        for job in {s.job for s in self._running}:
            job.fail(failure)
            self._admission.release(job)
        self._touched.clear()
        self._admission.reset()

    def _drop_abandoned(self) -> None:
        """Requests whose client left or whose deadline passed stop here, queued or running."""
        now = time.monotonic()
        gone = self._queue.remove_gone(now)
        running = {s.job for s in self._running}
        gone += [job for job in [*running, *self._admission.paused] if job.cancelled.is_set() or job.expired(now)]
        for job in gone:
            self.stats.requests_aborted += 1
            if not job.cancelled.is_set():
                self._emit(job, DeadlineReached())
            self._admission.release(job)

    def _emit(self, job: Job, event: EngineEvent) -> None:
        job.emit(event)
        self._touched.add(job)

    # -- decoding -------------------------------------------------------------------------------

    def _decode_step(self, online_only: bool = False) -> None:
        """One token for every sequence whose prompt is in its slot but for its last token."""
        for sequence in self._running:
            self._catch_up(sequence)  # candidates join their first in its first step
        ready = sorted(
            (s for s in self._running if s.pending == 1 and not (online_only and s.job.request.background)),
            key=lambda s: s.slot.seq_id,
        )
        # One decode call per LoRA adapter (the context applies one at a time), the one applied now first:
        # changing it costs llama.cpp a new graph, so base and tuned traffic together change it once a step.
        by_adapter: dict[str | None, list[Sequence]] = {}
        for sequence in ready:
            by_adapter.setdefault(sequence.job.request.adapter, []).append(sequence)
        for adapter, group in sorted(by_adapter.items(), key=lambda item: (item[0] != self._adapter, item[0] or "")):
            self._use_adapter(adapter)
            # In slot order: llama.cpp decodes each run of neighbouring streams in one pass.
            items = [BatchItem(s.slot.seq_id, s.tokens[-1], s.decoded, True) for s in group]
            drafts = self._drafts(group, items)
            items += [BatchItem(s.slot.seq_id, token, s.decoded + 1, True) for s, token in drafts]
            if not self._decoder.decode(items):
                raise errors.ResourceExhausted("The KV cache of this model is full.")
            self.stats.decode_steps += 1
            self.stats.decode_rows += len(group)
            self.stats.draft_rows += len(drafts)
            for row, sequence in enumerate(group):
                sequence.decoded += 1
                self._sample(sequence, row)
            for row, (sequence, token) in enumerate(drafts, start=len(group)):
                if not sequence.done and sequence.tokens[-1] == token:  # sampled what the draft row computed
                    sequence.decoded += 1
                    self.stats.drafts_accepted += 1
                    self._sample(sequence, row)
                elif not sequence.done:
                    self._decoder.forget(sequence.slot.seq_id, sequence.decoded)

    def _drafts(self, group: list[Sequence], items: list[BatchItem]) -> list[tuple[Sequence, int]]:
        """A draft row for each sequence the decoder would otherwise give a companion row (``split_rows``): a guess
        at its next token, in its own stream (see ``drafts``). Not where the sequence ends with this step's token
        (its budget, or the context, would end it)."""
        drafts = []
        for row in self._decoder.split_rows(items):
            sequence = group[row]
            if (
                sequence.produced + 1 < sequence.job.request.max_tokens
                and len(sequence.tokens) + 2 < self._decoder.info.context_length
            ):
                drafts.append((sequence, sequence.lookup.draft(sequence.tokens)))
        return drafts

    def _prefill(self, budget: int, *, background: bool, call: int, arrivals: int = 0) -> int:
        """Prompt chunks of online or of batch sequences, one sequence per decode call of up to ``call`` tokens,
        within a token budget; returns what is left of it. Batch prompts stop as soon as an online request
        arrives after ``arrivals``, so it is admitted at the next turn."""
        for sequence in list(self._running):
            if sequence.job.request.background != background or not self._catch_up(sequence):
                continue
            while budget > 0 and sequence.pending > 1:
                if background and self._queue.online_arrivals != arrivals:
                    return budget
                stop = self._prefill_stop(sequence.decoded, len(sequence.tokens) - 1, min(budget, call))
                if sequence.job.media:
                    span = next((s for s in sequence.job.media if s.end > sequence.decoded), None)
                    if span is not None and span.start <= sequence.decoded:
                        budget -= self._prefill_picture(sequence, span)
                        continue
                    if span is not None:
                        stop = min(stop, span.start)
                self._start_call_early(sequence, stop)
                chunk = sequence.tokens[sequence.decoded : stop]
                self._use_adapter(sequence.job.request.adapter)
                items = [
                    BatchItem(sequence.slot.seq_id, token, sequence.decoded + i, False) for i, token in enumerate(chunk)
                ]
                if not self._decoder.decode(items):
                    raise errors.ResourceExhausted("The KV cache of this model is full.")
                sequence.decoded = stop
                self.stats.prompt_tokens_evaluated += len(chunk)
                budget -= len(chunk)
        return budget

    def _catch_up(self, sequence: Sequence) -> bool:
        """A sequence that follows another slot's prompt cells starts from a copy once they are computed (see
        ``PrefixReuse.follow``): False while it waits for them."""
        if sequence.follows is None:
            return True
        before = sequence.decoded
        copied = self._reuse.follow(sequence)
        if copied is None:
            return False
        if copied and sequence.index == 0:
            self.stats.prompt_tokens_reused += copied - before
            self.stats.prompts_copied += 1
            self._emit(sequence.job, Admitted(cached_tokens=copied))
        return True

    def _prefill_stop(self, start: int, end: int, limit: int) -> int:
        """Where one prompt call that starts at ``start`` ends: after the chunk there and as many whole chunks after
        it as ``limit`` takes (chunk boundaries, as prefix reuse expects, are kept). Whatever the limit, it ends at
        the prompt's end or past the decoder's ``one_pass_cells``: a longer prompt is never read in one pass (see
        ``NativeModel._padding``)."""
        one_pass = self._decoder.one_pass_cells
        stop = chunk_end(start, end, self._chunk)
        while stop < end and ((after := chunk_end(stop, end, self._chunk)) - start <= limit or stop <= one_pass):
            stop = after
        return stop

    def _start_call_early(self, sequence: Sequence, stop: int) -> None:
        """A prompt call shorter than the decoder pads prompt calls to (``min_prompt_rows``), whose filler rows would
        not fit before the end of the context, starts earlier instead: the cells in between are computed again, to
        the same numbers (the tiled kernel rounds a row alike whatever its call holds). Not across a picture."""
        rows = self._decoder.min_prompt_rows
        start = sequence.decoded
        end = padded_end(start, stop, rows, self._decoder.one_pass_cells)
        if stop - start >= rows or end <= self._decoder.info.context_length:
            return
        begin = max(0, stop - rows)
        if any(span.start < start and span.end > begin for span in sequence.job.media or ()):
            return
        self._decoder.forget(sequence.slot.seq_id, begin)
        sequence.decoded = begin

    def _prefill_picture(self, sequence: Sequence, span: MediaSpan) -> int:
        """A picture's embeddings, decoded whole (its tokens may attend to each other); a prompt reused
        up to the middle of a picture starts that picture again."""
        seq_id = sequence.slot.seq_id
        if sequence.decoded > span.start:
            self._decoder.forget(seq_id, span.start)
            sequence.decoded = span.start
        self._use_adapter(sequence.job.request.adapter)
        if not self._decoder.decode_embeddings(seq_id, span.start, span.embeddings, span.non_causal):
            raise errors.ResourceExhausted("The KV cache of this model is full.")
        sequence.decoded = span.end
        self.stats.prompt_tokens_evaluated += span.end - span.start
        return span.end - span.start

    def _use_adapter(self, adapter: str | None) -> None:
        self._decoder.use_adapter(adapter)
        self._adapter = adapter

    def _sample(self, sequence: Sequence, row: int) -> None:
        request = sequence.job.request
        token = sequence.sampler.sample(row)
        step = self._decoder.step_logprobs(row, token, request.logprobs) if request.logprobs is not None else None
        if self._decoder.is_end_of_generation(token):
            self._finish(sequence, sequence.ending if sequence.sampler.closed else FinishReason.STOP)
            return
        sequence.produced += 1
        self.stats.tokens_generated += 1
        self.stats.last_request_tokens_generated += 1
        released = sequence.text.push(self._decoder.piece(token), step)
        if released.text or released.logprobs:
            self._emit(sequence.job, TextDelta(sequence.index, released.text, released.logprobs))
        if released.stopped:
            self._finish(sequence, FinishReason.STOP, flush=False)
        elif sequence.sampler.closed:  # closed early (to fit the budget, or out of a loop), and complete
            self._finish(sequence, sequence.ending)
        elif sequence.produced >= request.max_tokens or len(sequence.tokens) + 1 >= self._decoder.info.context_length:
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
            self._admission.release(job)
