"""What the scheduler needs from a model and its context: the ``Decoder`` protocol, its samplers, and
the batch rows it decodes.

``native.NativeModel`` implements it over llama.cpp; unit tests drive the scheduler with a pure Python
fake. Nothing here imports llama.cpp (nor numpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from localgem.engines.base import ModelInfo, SamplingParams, StepLogprobs
from localgem.engines.llama.constraints import Grammar

#: Prompt calls end on a multiple of this many cells (see ``NativeModel._padding``).
PROMPT_CELLS_MULTIPLE = 8


@dataclass(frozen=True)
class BatchItem:
    """One row of a batch: ``token`` at ``position`` of sequence (slot) ``sequence``; ``logits`` asks
    for its logits, so that the row can be sampled from."""

    sequence: int
    token: int
    position: int
    logits: bool


class TokenSampler(Protocol):
    """Picks one sequence's tokens (keeping its RNG, penalty history and grammar state)."""

    def sample(self, batch_index: int) -> int:
        """The next token, from the logits of one row of the last batch (this also accepts it)."""
        ...

    def may_end(self) -> bool:
        """Could the output end here as it is (free text, or a complete constrained output)?"""
        ...

    def close_now(self) -> bool:
        """Ends a constrained output with its shortest completion, given out by the next samples;
        False when there is nothing to close."""
        ...

    @property
    def closed(self) -> bool:
        """The output was closed early and is complete: it ends here."""
        ...

    def close(self) -> None:
        """Frees what the sampler holds; it is not used again."""
        ...


def padded_end(start: int, stop: int, min_rows: int, one_pass_cells: int) -> int:
    """The cell a prompt call of the cells [start, stop) ends on once filler rows are added: a multiple of
    PROMPT_CELLS_MULTIPLE, and at least ``min_rows`` rows after ``start`` unless the call ends within
    ``one_pass_cells`` (see ``NativeModel._padding``)."""
    rows_end = start + max(stop - start, min_rows if stop > one_pass_cells else 0)
    return rows_end + (-rows_end % PROMPT_CELLS_MULTIPLE)


def lone_rows(items: list[BatchItem], from_position: int) -> list[int]:
    """The rows of a decode step (every row wants logits; none in a prompt call), at ``from_position`` or past it,
    that llama.cpp reads alone: each its sequence's only row, with no row of either neighbouring sequence in the step
    (llama.cpp reads each run of consecutive sequence ids of a call together)."""
    if not all(item.logits for item in items):
        return []
    rows: dict[int, int] = {}
    for item in items:
        rows[item.sequence] = rows.get(item.sequence, 0) + 1
    return [
        index
        for index, item in enumerate(items)
        if item.position >= from_position
        and rows[item.sequence] == 1
        and item.sequence - 1 not in rows
        and item.sequence + 1 not in rows
    ]


class Decoder(Protocol):
    """One model with a context of ``slots`` sequences, each its own KV stream of cells [0, n).

    Only the scheduler thread calls these (see ``native`` for why)."""

    slots: int
    info: ModelInfo
    #: Rows ``decode`` pads a prompt call to (0: none; see ``NativeModel._padding``), unless the call ends within
    #: the first ``one_pass_cells`` cells: a prompt that short is read in one pass, and its cells are reused only by
    #: prompts as short (see ``prefix_reuse.reusable``).
    min_prompt_rows: int
    one_pass_cells: int

    def decode(self, items: list[BatchItem]) -> bool:
        """Decode one batch; False when the KV cache has no room for it (nothing was changed)."""
        ...

    def split_rows(self, items: list[BatchItem]) -> list[int]:
        """The rows of a decode step that ``decode`` would give a companion row (see ``NativeModel._companions``),
        which a second row of their own sequence in the step (a draft of its next token) makes needless."""
        ...

    def load_adapter(self, adapter: str) -> None:
        """Makes a LoRA adapter (a file) ready for ``use_adapter``; FailedPrecondition if it cannot be read."""
        ...

    def use_adapter(self, adapter: str | None) -> None:
        """The decodes from now on apply this adapter (loaded by ``load_adapter``) over the base weights; None:
        the base weights alone. The whole context shares it, so one decode call serves one adapter."""
        ...

    def decode_embeddings(self, sequence: int, position: int, embeddings: Any, non_causal: bool) -> bool:
        """Decode rows of input embeddings (a picture's: n_tokens x n_embd floats) at ``position`` on, in
        one pass (``non_causal``: they attend to each other); False when the KV cache has no room."""
        ...

    def forget(self, sequence: int, start: int = -1) -> None:
        """Drop a sequence's cells from ``start`` on (all of them by default)."""
        ...

    def copy_cells(self, source: int, target: int) -> bool:
        """Replace ``target``'s cells with a copy of ``source``'s; False (and an empty target) if they do not fit."""
        ...

    def clear(self) -> None:
        """Drop every sequence's cells."""
        ...

    def save_sequence(self, sequence: int) -> bytes:
        """A sequence's cells, serialised (for ``load_sequence``)."""
        ...

    def holds(self, sequence: int, cells: int) -> bool:
        """Does the sequence still hold what a prompt that starts from its first ``cells`` cells needs? Always,
        but in a windowed sliding-window cache, whose layers keep only their window (older cells are gone)."""
        ...

    def load_sequence(self, sequence: int, state: bytes) -> bool:
        """Replace a sequence's cells with saved ones; False (and an empty sequence) if they do not fit."""
        ...

    def sampler(
        self, params: SamplingParams, seed: int | None, window: int, grammar: Grammar | None = None
    ) -> TokenSampler:
        """A sampler for one sequence whose output may run to ``window`` tokens."""
        ...

    def step_logprobs(self, batch_index: int, chosen: int, top_n: int) -> StepLogprobs:
        """Log probabilities of ``chosen`` (and of the ``top_n`` most likely tokens) at one batch row."""
        ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def piece(self, token: int) -> bytes:
        """The bytes of a token's text (a UTF-8 character may span tokens)."""
        ...
