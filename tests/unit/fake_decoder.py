"""A pure Python ``Decoder`` for driving the llama scheduler without a model.

Its "model" hashes a sequence's cells: the next token depends on every cell the sequence holds, in
order, so a cell lost, doubled, misplaced or left over from another prompt changes the output. Its
``decode`` also refuses rows whose positions do not continue the sequence, as llama.cpp would.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from localgem import errors
from localgem.engines.base import ModelInfo, SamplingParams, StepLogprobs, TokenLogprob
from localgem.engines.llama.constraints import Grammar
from localgem.engines.llama.decoder import BatchItem, lone_rows

ALPHABET = "_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # token 0 is the end of generation
EOS = 0
_MODULUS = (1 << 61) - 1


def _mix(previous: int, token: int) -> int:
    return (previous * 1_000_003 + token + 7) % _MODULUS


def _next_token(digest: int) -> int:
    return 1 + digest % (len(ALPHABET) - 1)  # never EOS: outputs end at their budget


def continuation(prompt: list[int], n: int) -> str:
    """The text a greedy run of ``prompt`` for ``n`` tokens gives, computed without the scheduler."""
    digest = 0
    for token in prompt:
        digest = _mix(digest, token)
    text = ""
    for _ in range(n):
        token = _next_token(digest)
        text += ALPHABET[token]
        digest = _mix(digest, token)
    return text


@dataclass
class FakeSampler:
    decoder: FakeDecoder
    seed: int | None
    closed: bool = False  # never closed early (no grammars here)
    released: bool = False

    def sample(self, batch_index: int) -> int:
        return self.decoder.next_token(batch_index)

    def may_end(self) -> bool:
        return True

    def close_now(self) -> bool:
        return False

    def close(self) -> None:
        self.released = True


@dataclass
class FakeDecoder:
    slots: int = 1
    context_length: int = 1 << 30
    min_prompt_rows: int = 0
    one_pass_cells: int = 0
    #: As llama.cpp's split kernel: lone decode rows from this position on need a second row (0: none do).
    split_from: int = 0
    #: Cells the whole cache holds at most (decode answers False beyond).
    capacity: int | None = None
    #: ``load_sequence`` and ``copy_cells`` answer False (the cells do not fit).
    fail_loads: bool = False
    #: As a windowed sliding-window cache: its layers attend ``window`` positions back and keep the last
    #: ``ring`` cells of each sequence (older ones are overwritten); 0: all of them.
    window: int = 0
    ring: int = 0
    info: ModelInfo = field(init=False)
    cells: dict[int, list[int]] = field(init=False)
    batches: list[list[BatchItem]] = field(default_factory=list)
    samplers: list[FakeSampler] = field(default_factory=list)
    #: The sequences whose cells were saved, in order; and each (source, target) of ``copy_cells``.
    saved: list[int] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)
    #: The LoRA adapter the decodes apply now, and the one each batch was decoded under.
    adapter: str | None = None
    adapters: list[str | None] = field(default_factory=list)
    #: Set while a held ``decode`` call waits for ``release``.
    held: threading.Event = field(default_factory=threading.Event)
    _digests: dict[int, list[int]] = field(init=False)  # per sequence: the digest after each cell
    _rows: list[int | None] = field(default_factory=list)  # the digest after each row of the last batch to sample
    _steps: int = 0  # decode calls with rows to sample (decode steps) so far
    _hold_from: int | None = None
    _releases: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.info = ModelInfo(self.context_length, self.context_length, len(ALPHABET), None, "<s>", "</s>", True)
        self.cells = {i: [] for i in range(self.slots)}
        self._digests = {i: [] for i in range(self.slots)}
        self.earliest = dict.fromkeys(range(self.slots), 0)  # per sequence: the first position still kept

    # -- test controls ----------------------------------------------------------------------------

    def hold(self, steps: int | None = None) -> None:
        """The first decode call made once ``steps`` decode steps are done (by default: the next call)
        blocks until ``release``."""
        with self._lock:
            self._hold_from = self._steps if steps is None else steps

    def release(self, steps: int | None = None) -> None:
        """The held call (if any) goes on; with ``steps``, the first call made once that many decode steps
        are done is held again."""
        with self._lock:
            self._hold_from = steps
            self._releases += 1
            self.held.clear()
            self._lock.notify_all()

    def wait_held(self, timeout: float = 5.0) -> None:
        assert self.held.wait(timeout), "the scheduler never reached the held decode call"

    def step_rows(self) -> list[list[int]]:
        """The sequences of each decode step's rows, in order (prompt chunks left out)."""
        return [[item.sequence for item in batch] for batch in self.batches if batch[0].logits]

    def prompt_chunks(self, sequence: int) -> list[tuple[int, int]]:
        """(first, last + 1) positions of each prompt chunk decoded into ``sequence``."""
        return [
            (batch[0].position, batch[-1].position + 1)
            for batch in self.batches
            if not batch[0].logits and batch[0].sequence == sequence
        ]

    # -- Decoder ----------------------------------------------------------------------------------

    def load_adapter(self, adapter: str) -> None:
        if adapter.startswith("missing"):
            raise errors.FailedPrecondition(f"no adapter {adapter}")

    def use_adapter(self, adapter: str | None) -> None:
        self.adapter = adapter

    def decode(self, items: list[BatchItem]) -> bool:
        with self._lock:
            if self._hold_from is not None and self._steps >= self._hold_from:
                self.held.set()
                ticket = self._releases
                self._lock.wait_for(lambda: self._releases != ticket)
        if self.capacity is not None and sum(map(len, self.cells.values())) + len(items) > self.capacity:
            return False
        for item in items:
            cells = self.cells[item.sequence]
            if item.position != len(cells):
                raise RuntimeError(f"position {item.position} of sequence {item.sequence}, which holds {len(cells)}")
            digests = self._digests[item.sequence]
            digests.append(_mix(digests[-1] if digests else 0, item.token))
            cells.append(item.token)
            if self.ring:
                self.earliest[item.sequence] = max(self.earliest[item.sequence], len(cells) - self.ring)
        self.batches.append(list(items))
        self.adapters.append(self.adapter)
        self._rows = [self._digests[item.sequence][item.position] if item.logits else None for item in items]
        self._steps += any(item.logits for item in items)
        return True

    def forget(self, sequence: int, start: int = -1) -> None:
        start = max(start, 0)
        del self.cells[sequence][start:]
        del self._digests[sequence][start:]
        if not self.cells[sequence]:
            self.earliest[sequence] = 0

    def copy_cells(self, source: int, target: int) -> bool:
        self.copies.append((source, target))
        if self.fail_loads:
            self.forget(target)
            return False
        self.cells[target] = list(self.cells[source])
        self._digests[target] = list(self._digests[source])
        self.earliest[target] = self.earliest[source]
        return True

    def holds(self, sequence: int, cells: int) -> bool:
        if not self.window or cells == 0:
            return True
        return bool(self.cells[sequence]) and self.earliest[sequence] <= max(0, cells - self.window)

    def clear(self) -> None:
        for sequence in self.cells:
            self.forget(sequence)

    def save_sequence(self, sequence: int) -> bytes:
        self.saved.append(sequence)
        return json.dumps(self.cells[sequence]).encode()

    def load_sequence(self, sequence: int, state: bytes) -> bool:
        self.forget(sequence)
        if self.fail_loads:
            return False
        digest = 0
        for token in json.loads(state):
            digest = _mix(digest, token)
            self.cells[sequence].append(token)
            self._digests[sequence].append(digest)
        if self.ring:
            self.earliest[sequence] = max(0, len(self.cells[sequence]) - self.ring)  # its last ring was saved
        return True

    def sampler(
        self, params: SamplingParams, seed: int | None, window: int, grammar: Grammar | None = None
    ) -> FakeSampler:
        sampler = FakeSampler(self, seed)
        self.samplers.append(sampler)
        return sampler

    def step_logprobs(self, batch_index: int, chosen: int, top_n: int) -> StepLogprobs:
        return StepLogprobs(TokenLogprob(chosen, ALPHABET[chosen], -0.5), ())

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOS

    def piece(self, token: int) -> bytes:
        return ALPHABET[token].encode()

    def next_token(self, batch_index: int) -> int:
        digest = self._rows[batch_index]
        assert digest is not None, "sampled a row decoded without logits"
        return _next_token(digest)

    def split_rows(self, items: list[BatchItem]) -> list[int]:
        return lone_rows(items, self.split_from) if self.split_from else []
