"""Sampling one sequence's next token on llama.cpp: its sampler chain (RNG, penalties), and its grammar
when the output is constrained, closed within the token budget rather than cut (``closing``).

Only the scheduler thread uses a Sampler (it reads the context's logits)."""

from __future__ import annotations

import ctypes
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from localgem.engines.base import SamplingParams
from localgem.engines.llama.closing import BudgetCloser
from localgem.engines.llama.constraints import Grammar
from localgem.engines.llama.gbnf import compile_grammar

if TYPE_CHECKING:
    from localgem.engines.llama.native import NativeModel


class Sampler:
    """A llama.cpp sampler chain for one sequence (it keeps the RNG and penalty history), and the
    sequence's grammar if its output is constrained."""

    def __init__(
        self, native: NativeModel, params: SamplingParams, seed: int | None, window: int, grammar: Grammar | None = None
    ) -> None:
        lc = native.lc
        self._lc = lc
        self._native = native
        self._grammar = native.grammar_sampler(grammar) if grammar is not None else None
        # A lazy grammar's trigger, until the output has written it; and the output's last bytes.
        self._trigger = grammar.trigger.encode("utf-8") if grammar is not None and grammar.trigger else None
        self._tail = b""
        # Keeps the constrained output closable within ``window`` tokens; once it must close, the
        # tokens of the shortest completion, given out one per step.
        self._closer = (
            BudgetCloser(compile_grammar(grammar.gbnf), window, native.plain_tokens) if grammar is not None else None
        )
        self._forced: deque[int] | None = None
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        self._penalized = bool(params.presence_penalty or params.frequency_penalty)
        if self._penalized:
            # Only generated tokens are accepted into the chain, so penalties cover the response.
            lc.llama_sampler_chain_add(
                chain,
                lc.llama_sampler_init_penalties(
                    native.vocab_size, window, 1.0, params.frequency_penalty, params.presence_penalty
                ),
            )
        #: Greedy without penalties keeps no state: the most likely token, read straight off the logits (llama.cpp's
        #: greedy sampler first copies the whole vocabulary into a candidate array: 262k entries for Gemma).
        self._argmax = params.temperature <= 0 and not self._penalized
        if params.temperature <= 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            if params.top_k > 0:
                lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(params.temperature))
            value = secrets.randbits(31) if seed is None else seed
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(value % 0xFFFFFFFF))
        self._chain = chain

    def sample(self, batch_index: int) -> int:
        """Pick the next token from the logits of one batch row (this also accepts it into the chain)."""
        if self._forced is not None:
            return self._forced.popleft() if self._forced else self._native.eos_token
        if self._grammar is None:
            return self._free_pick(batch_index)
        token, into_chain = self._choose(batch_index)
        closer = self._closer
        if closer is not None and self._trigger is None and not closer.fits(self._native.piece(token)):
            # The output would no longer close within its budget: close it now, from where it still did.
            self._forced = deque(closer.closing_tokens())
            return self._forced.popleft() if self._forced else self._native.eos_token
        self._accept(token, into_chain=into_chain)
        if closer is not None:
            closer.take()
        return token

    def may_end(self) -> bool:
        """Could the output end here as it is: free text, or constrained output whose grammar is complete
        (or followed no longer)?"""
        closer = self._closer
        return closer is None or self._trigger is not None or closer.lost or closer.complete

    def close_now(self) -> bool:
        """Ends a constrained output with its shortest completion (given out by the next samples); False
        when there is nothing to close (free text, or a lazy grammar not started)."""
        closer = self._closer
        if closer is None or closer.lost or self._trigger is not None or self._forced is not None:
            return False
        self._forced = deque(closer.closing_tokens())
        return True

    @property
    def closed(self) -> bool:
        """The output was closed early to fit its budget, and is complete: it ends here (MAX_TOKENS)."""
        return self._forced is not None and not self._forced

    def _choose(self, batch_index: int) -> tuple[int, bool]:
        """As llama.cpp's own sampling does: pick freely, and only if the grammar rejects that token
        apply the grammar and pick again. Also says whether the token still goes into the chain."""
        if self._penalized:
            logits = self._native.logits(batch_index)
            token = self._pick(_candidates(logits), grammar_first=False)
        else:
            # Without penalties the chain keeps no history, so its own (C-side) sampling can go first.
            token = self._free_pick(batch_index)
        if self._acceptable(token):
            return token, self._penalized
        logits = self._native.logits(batch_index)
        token = self._pick_short_of_trigger(logits) if self._trigger is not None else self._pick_allowed(logits)
        return token, True

    def _free_pick(self, batch_index: int) -> int:
        """The chain's pick, accepted into it (greedy without penalties has nothing to accept it into)."""
        if self._argmax:  # as llama.cpp's greedy sampler: the first of equal maxima
            return int(self._native.logits(batch_index).argmax())
        return int(self._lc.llama_sampler_sample(self._chain, self._native.ctx, batch_index))

    def _acceptable(self, token: int) -> bool:
        if self._trigger is not None:  # a lazy grammar allows anything until its trigger
            return not self._overshoots(token) and not self._opens_without_room(token)
        return self._allowed(token)

    def _opens_without_room(self, token: int) -> bool:
        """Would ``token`` start the grammar (complete the trigger) with too few tokens left to close it?"""
        assert self._trigger is not None
        if self._closer is None:
            return False
        text = self._tail + self._native.piece(token)
        return text.endswith(self._trigger) and not self._closer.room_to_start()

    def _overshoots(self, token: int) -> bool:
        """Would ``token`` complete the trigger and carry more characters? Those would escape the
        grammar, which starts right after the trigger."""
        assert self._trigger is not None
        text = self._tail + self._native.piece(token)
        at = text.find(self._trigger)
        return at >= 0 and at + len(self._trigger) < len(text)

    def _pick_allowed(self, logits: np.ndarray) -> int:
        # Checking the grammar over the whole vocabulary is the slow part (262k tokens for Gemma):
        # try the most likely tokens first, and the whole vocabulary only if none of them fits.
        likely = _candidates(logits, np.argpartition(-logits, _LIKELY)[:_LIKELY])
        token = self._pick(likely, grammar_first=True, need_allowed=True)
        if token < 0:
            token = self._pick(_candidates(logits), grammar_first=True)
        return token

    def _pick_short_of_trigger(self, logits: np.ndarray) -> int:
        banned: list[int] = []
        for _ in range(_MAX_REPICKS):
            candidates = _candidates(logits)
            candidates["logit"][banned] = -np.inf  # ids are positions until the chain sorts them
            token = self._pick(candidates, grammar_first=False)
            if self._acceptable(token):
                return token
            banned.append(token)
        return self._native.eos_token

    def _accept(self, token: int, *, into_chain: bool) -> None:
        if into_chain:
            self._lc.llama_sampler_accept(self._chain, token)
        if self._trigger is not None:
            self._see(token)
            if self._closer is not None:
                self._closer.left -= 1  # the grammar, and what it follows, start after the trigger
        else:
            self._lc.llama_sampler_accept(self._grammar, token)

    def _see(self, token: int) -> None:
        """Before the trigger: watch for it; the grammar starts right after it."""
        assert self._trigger is not None
        self._tail = (self._tail + self._native.piece(token))[-len(self._trigger) :]
        if self._tail == self._trigger:
            self._trigger = None

    def _pick(self, candidates: np.ndarray, *, grammar_first: bool, need_allowed: bool = False) -> int:
        array = _token_array(self._lc, candidates)
        if grammar_first:
            self._lc.llama_sampler_apply(self._grammar, ctypes.byref(array))
            if need_allowed and not np.isfinite(candidates["logit"][: array.size]).any():
                return -1
        self._lc.llama_sampler_apply(self._chain, ctypes.byref(array))
        return int(candidates["id"][array.selected])

    def _allowed(self, token: int) -> bool:
        single = np.array([(token, 0.0, 0.0)], dtype=_TOKEN_DATA)
        array = _token_array(self._lc, single)
        self._lc.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return bool(np.isfinite(single["logit"][0]))

    def close(self) -> None:
        if self._chain is not None:
            self._lc.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            self._lc.llama_sampler_free(self._grammar)
            self._grammar = None


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
_LIKELY = 128
_MAX_REPICKS = 32


def _candidates(logits: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Candidate tokens (all, or ``ids``) with their logits, laid out as ``llama_token_data``."""
    ids = np.arange(len(logits), dtype=np.int32) if ids is None else ids.astype(np.int32)
    data = np.empty(len(ids), dtype=_TOKEN_DATA)
    data["id"] = ids
    data["logit"] = logits if len(ids) == len(logits) else logits[ids]
    data["p"] = 0.0
    return data


def _token_array(lc: Any, candidates: np.ndarray) -> Any:
    """A ``llama_token_data_array`` over the numpy array's memory (the samplers edit it in place)."""
    return lc.llama_token_data_array(
        data=candidates.ctypes.data_as(lc.llama_token_data_p), size=len(candidates), selected=-1, sorted=False
    )
