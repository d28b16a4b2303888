"""Prefix reuse: how prompts are cut into chunks, which free slot a prompt starts in, and how much of
what that slot (or a kept prefix) holds it starts from.

The rules are pure functions of token lists and the chunk size, so that they can be tested alone:
a prompt is always cut the same way (chunks start at multiples of the chunk size and hold at least
MIN_CHUNK tokens), so it is reused only up to a point where a chunk of both its own cut and the cut
of the prompt that filled the cells ends. ``PrefixReuse`` applies them to the slots and the kept
prefixes; like the slots, it is used by the scheduler thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Sequence as Tokens

from localgem.engines.base import EngineStats
from localgem.engines.llama.decoder import Decoder
from localgem.engines.llama.jobs import Sequence, Slot, Source
from localgem.engines.llama.prefixes import KeptPrefix, PrefixStore

log = logging.getLogger(__name__)

#: Prompt chunks are never shorter (but for prompts that short): llama.cpp's quantized matmuls
#: switch kernels below four rows.
MIN_CHUNK = 4
#: A prompt starts from a copy of another slot's cells (see ``PrefixReuse.source``) only when that saves computing
#: at least this many tokens, and one for every COPIED_CELLS_PER_TOKEN cells copied (the copy takes all the source's
#: cells, at a few microseconds each; a prompt token costs milliseconds).
FOLLOW_MIN_TOKENS = 8
COPIED_CELLS_PER_TOKEN = 100


def chunk_end(start: int, end: int, chunk: int) -> int:
    """Where the chunk of a prompt cut up to ``end`` that starts at ``start`` ends: chunks end at
    multiples of the chunk size; a short tail joins the chunk before it."""
    stop = min((start // chunk + 1) * chunk, end)
    return end if end - stop < MIN_CHUNK else stop


def boundary(position: int, end: int, chunk: int) -> bool:
    """Does a chunk of a prompt cut up to ``end`` end at ``position``?"""
    return position == end or (position % chunk == 0 and end - position >= MIN_CHUNK)


def reusable(cached: Tokens[int], prompt: list[int], chunk: int, one_pass: int = 0) -> int:
    """How many of ``cached``'s cells ``prompt`` may start from: a chunk boundary of both prompts' cuts,
    so that what is computed next is the very chunk a cold start computes. (A cached slot's cells
    always end where a chunk of its prompt ended, so ``len(cached)`` stands for that prompt's end.)
    At least the prompt's last token is left to decode. The same prompt again starts from all of its cells:
    they were cut as its cold start cuts them, and only its last token is decoded.

    Where prompts of at most ``one_pass`` prompt rows (their tokens but the last) are read in one pass and longer
    ones by another kernel (see ``NativeModel._padding``), cells go only to a prompt of their own kind: a short
    prompt's to short prompts, and more than ``one_pass`` of a long prompt's to long ones (whose calls all end
    past ``one_pass``)."""
    last = len(prompt) - 1
    shared = common_prefix(cached, prompt, last)
    if shared == last == len(cached):
        n = last
    else:
        n = shared // chunk * chunk
        while n and not (boundary(n, last, chunk) and boundary(n, len(cached), chunk)):
            n -= chunk
    if one_pass and (n <= one_pass if last > one_pass else len(cached) > one_pass):
        return 0
    return n


def _always(_slot: Slot, _cells: int) -> bool:
    return True


def best_slot(
    free: list[Slot],
    prompt: list[int],
    chunk: int,
    reuse: bool = True,
    adapter: str | None = None,
    holds: Callable[[Slot, int], bool] = _always,
    one_pass: int = 0,
) -> tuple[Slot, int]:
    """The free slot that already holds the longest start of ``prompt``, and how much of it is reused;
    else an empty one, else the one used longest ago (so useful caches live longest).

    A slot is taken for what it shares only if that is at least half of what it holds (as
    llama-server's slot similarity): a prompt that merely starts like a long cached one (the
    same chat template, another document) goes elsewhere and leaves that cache alone. Only cells computed
    under the same LoRA ``adapter`` (or none) are reused, and only where the slot ``holds`` what continues
    from there (a windowed sliding-window cache keeps only each layer's last window).
    """
    best, reused = min(free, key=spare_first), 0
    for slot in free if reuse else ():
        if slot.adapter != adapter:
            continue
        n = reusable(slot.cached, prompt, chunk, one_pass)
        if n > reused and 2 * common_prefix(slot.cached, prompt, len(prompt)) >= len(slot.cached) and holds(slot, n):
            best, reused = slot, n
    return best, reused


def spare_first(slot: Slot) -> tuple[bool, float, int]:
    """Slots to give away first: empty ones, then the one whose cache was used longest ago."""
    return bool(slot.cached), slot.last_used, slot.seq_id


def common_prefix(a: Tokens[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixReuse:
    """The rules above over the slots' cells and the kept prefixes (``PrefixStore``, which has its own
    lock). Scheduler thread only."""

    def __init__(
        self, decoder: Decoder, *, chunk: int, stats: EngineStats, prefixes: PrefixStore | None, reuse: bool
    ) -> None:
        self._decoder = decoder
        self._chunk = chunk
        self._stats = stats
        self._prefixes = prefixes
        self._reuse = reuse

    def choose(
        self, free: list[Slot], prompt: list[int], prefix_key: str | None, adapter: str | None = None
    ) -> tuple[Slot, int]:
        """The slot a prompt starts in, and how many of its cells it starts from (see ``best_slot``); a
        kept prefix (the base model's) is loaded into a free slot when it covers more of the prompt than any
        slot holds."""
        first, reused = self._best_slot(free, prompt, adapter)
        if prefix_key is not None and self._reuse and adapter is None:
            first, reused = self._restore(prefix_key, free, prompt, first, reused)
        return first, reused

    def _restore(self, key: str, free: list[Slot], prompt: list[int], first: Slot, reused: int) -> tuple[Slot, int]:
        """The slot given up for a kept prefix is the one a fresh prompt would take."""
        kept = self._prefixes.get(key) if self._prefixes is not None else None
        if kept is None or (n := self._reusable(kept.tokens, prompt)) <= reused:
            return first, reused
        slot = min(free, key=spare_first)
        slot.cached, slot.adapter = [], None
        if not self._decoder.load_sequence(slot.seq_id, kept.state):
            log.warning("the kept state of %s did not load; computing its prompt instead", key)
            return self._best_slot(free, prompt)
        if not self._decoder.holds(slot.seq_id, n):  # the window it kept ends before where this prompt goes on
            self._decoder.forget(slot.seq_id)
            return self._best_slot(free, prompt)
        slot.cached = list(kept.tokens)
        self._stats.prefixes_restored += 1
        return slot, n

    def _best_slot(self, free: list[Slot], prompt: list[int], adapter: str | None = None) -> tuple[Slot, int]:
        one_pass = self._decoder.one_pass_cells
        return best_slot(free, prompt, self._chunk, self._reuse, adapter, self._holds, one_pass)

    def _reusable(self, cached: Tokens[int], prompt: list[int]) -> int:
        return reusable(cached, prompt, self._chunk, self._decoder.one_pass_cells)

    def _holds(self, slot: Slot, cells: int) -> bool:
        return self._decoder.holds(slot.seq_id, cells)

    def source(
        self, slots: list[Slot], target: Slot, prompt: list[int], reused: int, adapter: str | None, background: bool
    ) -> Source | None:
        """Another slot whose cells cover more of ``prompt`` than the ``reused`` cells of ``target``, free or running a
        request that computes them (many requests that share a start arrive together, or a free slot holds a shared
        start but is not taken for it, see ``best_slot``): the prompt waits for them and starts from a copy instead of
        computing them again. Under the reuse rules above, as if those cells were ``target``'s own. An online prompt
        does not wait for batch work (whose prompts are not read while an online prompt waits)."""
        if not self._reuse:
            return None
        best: Source | None = None
        for slot in slots:
            running = slot.sequence
            if slot is target or _adapter_of(slot) != adapter:
                continue
            # What the slot will hold as prompt cells: a running prompt's, once computed (cut as cut there).
            planned = slot.cached if running is None else running.tokens[: len(running.job.request.prompt_tokens) - 1]
            n = self._reusable(planned, prompt)
            waits = running is not None and running.decoded < n
            held = max(len(planned), running.decoded if running else 0)
            if (
                n - reused < max(FOLLOW_MIN_TOKENS, held // COPIED_CELLS_PER_TOKEN)
                or (best is not None and n <= best.cells)
                or (waits and running.job.request.background and not background)
                or (not waits and not self._holds(slot, n))
            ):
                continue
            best = Source(slot, n, running if waits else None)
        return best

    def follow(self, sequence: Sequence) -> int | None:
        """A sequence that follows a ``Source``: None while the source has yet to compute the cells; else it starts
        from a copy of them (and no longer follows), and this says how many (0: the source went away or the copy
        failed, and it computes its prompt from where it was)."""
        source = sequence.follows
        assert source is not None
        slot = source.slot
        if source.sequence is not None and slot.sequence is source.sequence and source.sequence.decoded < source.cells:
            return None
        sequence.follows = None
        target = sequence.slot.seq_id
        held = slot.cached if slot.sequence is None else slot.sequence.prompt_cells()
        if _adapter_of(slot) != sequence.job.request.adapter or held[: source.cells] != sequence.tokens[: source.cells]:
            return 0
        if self._decoder.copy_cells(slot.seq_id, target):
            self._decoder.forget(target, source.cells)
            if self._decoder.holds(target, source.cells):
                sequence.decoded = source.cells
                return source.cells
        self._decoder.forget(target)  # its own cells went with the copy
        sequence.decoded = 0
        return 0

    def vacate(self, sequence: Sequence) -> None:
        """The sequence leaves its slot, which keeps the cells computed as prompt (those decoded one
        by one are not reusable as prompt)."""
        kept = sequence.prompt_cells()
        self._decoder.forget(sequence.slot.seq_id, len(kept))
        sequence.slot.cached = kept
        sequence.slot.adapter = sequence.job.request.adapter
        sequence.slot.sequence = None
        sequence.slot.last_used = time.monotonic()

    def keep(self, key: str, slot: Slot) -> None:
        """Keeps a slot's prompt cells under ``key`` (for requests with that ``prefix_key``)."""
        if self._prefixes is not None and slot.cached:
            state = self._decoder.save_sequence(slot.seq_id)
            self._prefixes.put(key, KeptPrefix(tuple(slot.cached), state))


def _adapter_of(slot: Slot) -> str | None:
    """The LoRA adapter a slot's cells are computed under: its running request's, else the one they were."""
    return slot.sequence.job.request.adapter if slot.sequence is not None else slot.adapter
