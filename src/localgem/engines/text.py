"""Token pieces → released text, for engines that decode token by token.

Text is released as soon as it cannot be the start of a stop sequence, so streams stay live
while the stop text itself is never returned. UTF-8 characters split across tokens are held
until complete. Log probabilities travel with the text their tokens produced.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from localgem.engines.base import StepLogprobs


@dataclass
class Release:
    text: str
    logprobs: tuple[StepLogprobs, ...]
    stopped: bool = False


@dataclass
class TextAssembler:
    stop_sequences: tuple[str, ...] = ()
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _held: str = ""
    _released_chars: int = 0
    #: (character offset where the token's text starts, its logprobs) not yet released.
    _pending: list[tuple[int, StepLogprobs | None]] = field(default_factory=list)

    def push(self, piece: bytes, logprobs: StepLogprobs | None = None) -> Release:
        start = self._released_chars + len(self._held)
        self._pending.append((start, logprobs))
        self._held += self._decoder.decode(piece)
        return self._release(final=False)

    def finish(self) -> Release:
        self._held += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> Release:
        held = self._held
        for stop in self.stop_sequences:
            at = held.find(stop)
            if at >= 0:
                return self._emit(held[:at], everything=True, stopped=True)
        keep = 0 if final else self._longest_stop_prefix_suffix(held)
        return self._emit(held[: len(held) - keep], everything=final)

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        best = 0
        for stop in self.stop_sequences:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best

    def _emit(self, text: str, everything: bool, stopped: bool = False) -> Release:
        self._held = "" if everything else self._held[len(text) :]
        self._released_chars += len(text)
        limit = self._released_chars
        # A token belongs to the answer once text it started is released; tokens that only
        # produced stop text are dropped with it.
        ready = [lp for start, lp in self._pending if start < limit or (everything and not stopped)]
        self._pending = [] if everything else [(start, lp) for start, lp in self._pending if start >= limit]
        return Release(text, tuple(lp for lp in ready if lp is not None), stopped)
