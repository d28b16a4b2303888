"""A thin, typed layer over llama-cpp-python's C bindings: one model, one context, one batch.

Only the scheduler thread may call the methods that touch the context (``decode``, ``logits``,
``seq_*``, samplers, ``piece``); ``tokenize`` only reads the vocabulary and is safe anywhere.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localgem import errors
from localgem.engines.base import Grammar, ModelInfo, SamplingParams, StepLogprobs, TokenLogprob
from localgem.engines.llama.closing import BudgetCloser
from localgem.engines.llama.gbnf import compile_grammar

log = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_state: dict[str, object] = {}
_NATIVE_ERROR = 4  # ggml_log_level: 1 debug, 2 info, 3 warn (mostly model quirks), 4 error, 5 continuation
_FLASH_ATTENTION = {False: 0, True: 1}  # llama_flash_attn_type: -1 auto, 0 off, 1 on


def _llama() -> Any:  # imported lazily: loading the shared library is work, not for import time
    import llama_cpp

    return llama_cpp


def _init_backend() -> None:
    """Once per process: route llama.cpp's native log lines into logging, start its backend."""
    with _backend_lock:
        if _backend_state:
            return
        lc = _llama()
        native = logging.getLogger("localgem.llama_cpp.native")

        @lc.llama_log_callback
        def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            native.log(
                logging.ERROR if level == _NATIVE_ERROR else logging.DEBUG,
                "%s",
                text.decode("utf-8", "replace").rstrip(),
            )

        _backend_state["log_callback"] = forward  # ctypes callbacks must outlive their registration
        lc.llama_log_set(forward, ctypes.c_void_p(0))
        lc.llama_backend_init()


@dataclass(frozen=True)
class BatchItem:
    sequence: int
    token: int
    position: int
    logits: bool


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
            return int(self._lc.llama_sampler_sample(self._chain, self._native.ctx, batch_index))
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
            token = int(self._lc.llama_sampler_sample(self._chain, self._native.ctx, batch_index))
        if self._acceptable(token):
            return token, self._penalized
        logits = self._native.logits(batch_index)
        token = self._pick_short_of_trigger(logits) if self._trigger is not None else self._pick_allowed(logits)
        return token, True

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


class NativeModel:
    """A GGUF model with a context of ``slots`` sequences, each with its own KV stream.

    Why one stream per sequence: llama.cpp's CPU attention sums over a stream's cells in cell
    order. In a shared (unified) cache a sequence's cells land wherever there is room, so its
    numbers would depend on what else is cached; in its own stream it always holds cells [0, n) in
    position order. Why no flash attention: its CPU kernel switches to other variants by chunk
    size and cache size, so a prompt's numbers would depend on how it was cut and what else ran.
    With the scheduler's rules on top (see ``scheduler``), a seeded request gives the same text
    alone or among others. (``flash_attention=True`` trades that for ~10% more speed at 8 streams.)

    That holds where llama.cpp's matmul kernels round the same whatever the batch width: it does
    for SmolLM2's Q4_1 weights; Gemma 3's Q4_K_M mix (Q4_K, Q5_0, Q8_0) rounds differently with
    more than about four rows per pass, so its seeded texts can differ under load.
    """

    def __init__(
        self,
        path: Path,
        *,
        slots: int,
        sequence_length: int,
        batch_size: int,
        threads: int | None,
        flash_attention: bool = False,
    ) -> None:
        _init_backend()
        lc = self.lc = _llama()
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self.model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise errors.Internal(f"llama.cpp could not load the model file {path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        trained = lc.llama_model_n_ctx_train(self.model)
        n_threads = threads or os.cpu_count() or 1
        context_length = min(sequence_length, trained)
        params = lc.llama_context_default_params()
        params.n_ctx = context_length * slots  # split evenly into one stream per sequence
        params.n_batch = batch_size
        params.n_ubatch = batch_size
        params.n_seq_max = slots
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = False
        params.flash_attn_type = _FLASH_ATTENTION[flash_attention]
        params.no_perf = True
        self.ctx = lc.llama_init_from_model(self.model, params)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise errors.Internal(f"llama.cpp could not create a context for {path}")
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch_size = batch_size
        self.slots = slots
        self._batch = lc.llama_batch_init(batch_size, 0, 1)
        self.vocab_size = lc.llama_vocab_n_tokens(self.vocab)
        self.eos_token = int(lc.llama_vocab_eos(self.vocab))
        self._piece_buffer = ctypes.create_string_buffer(256)
        template = lc.llama_model_chat_template(self.model, None)
        self.info = ModelInfo(
            context_length=context_length,
            trained_context_length=trained,
            vocab_size=self.vocab_size,
            chat_template=template.decode("utf-8") if template else None,
            bos_token=self.token_text(lc.llama_vocab_bos(self.vocab)),
            eos_token=self.token_text(lc.llama_vocab_eos(self.vocab)),
            add_bos=bool(lc.llama_vocab_get_add_bos(self.vocab)),
        )

    def close(self) -> None:
        self.lc.llama_batch_free(self._batch)
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)

    # -- vocabulary -----------------------------------------------------------------------------

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self.lc.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (self.lc.llama_token * capacity)()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, True)
        if n < 0:
            raise errors.Internal("llama.cpp failed to tokenize the prompt")
        return list(tokens[:n])

    def plain_tokens(self, text: str) -> list[int]:
        """``text`` as tokens, reading nothing in it as a special token."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (self.lc.llama_token * capacity)()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), tokens, capacity, False, False)
        return list(tokens[: max(n, 0)])

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self.lc.llama_vocab_is_eog(self.vocab, token))

    def piece(self, token: int) -> bytes:
        n = self.lc.llama_token_to_piece(self.vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False)
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            n = self.lc.llama_token_to_piece(self.vocab, token, self._piece_buffer, -n, 0, False)
        return self._piece_buffer.raw[:n]

    # -- context --------------------------------------------------------------------------------

    def decode(self, items: list[BatchItem]) -> bool:
        """Decode one batch; False when the KV cache has no room for it (nothing was changed)."""
        batch = self._batch
        for i, item in enumerate(items):
            batch.token[i] = item.token
            batch.pos[i] = item.position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = item.sequence
            batch.logits[i] = item.logits
        batch.n_tokens = len(items)
        status = self.lc.llama_decode(self.ctx, batch)
        if status == 1:
            return False
        if status != 0:
            raise errors.Internal(f"llama.cpp decode failed with status {status}")
        return True

    def forget(self, sequence: int, start: int = -1) -> None:
        """Drop a sequence's cells from ``start`` on (all of them by default)."""
        self.lc.llama_memory_seq_rm(self.memory, sequence, start, -1)

    def copy(self, source: int, target: int) -> None:
        """Give ``target`` a copy of all of ``source``'s cells (done at the next decode)."""
        self.lc.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.memory, False)

    def save_sequence(self, sequence: int) -> bytes:
        """A sequence's KV cells, serialised by llama.cpp (for ``load_sequence``, in this model only)."""
        size = self.lc.llama_state_seq_get_size(self.ctx, sequence)
        buffer = (ctypes.c_uint8 * size)()
        written = self.lc.llama_state_seq_get_data(self.ctx, buffer, size, sequence)
        return bytes(buffer)[:written]

    def load_sequence(self, sequence: int, state: bytes) -> bool:
        """Replace a sequence's cells with saved ones; False (and an empty sequence) if they do not fit."""
        self.forget(sequence)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self.lc.llama_state_seq_set_data(self.ctx, buffer, len(state), sequence) == 0:
            self.forget(sequence)
            return False
        return True

    def logits(self, batch_index: int) -> np.ndarray:
        """The logits of one batch row (a view: valid until the next decode)."""
        return np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, batch_index), shape=(self.vocab_size,))

    def grammar_sampler(self, grammar: Grammar) -> Any:
        """A grammar sampler for this vocabulary; ValueError if llama.cpp cannot parse the grammar."""
        # Lazy grammars are handled by the Sampler, not by llama.cpp's lazy mode: that one runs a
        # std::regex over the whole output at every token (slow, and deep recursion on long outputs).
        sampler = self.lc.llama_sampler_init_grammar(self.vocab, grammar.gbnf.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError("llama.cpp could not parse the grammar")
        return sampler

    def check_grammar(self, grammar: Grammar) -> None:
        self.lc.llama_sampler_free(self.grammar_sampler(grammar))

    def step_logprobs(self, batch_index: int, chosen: int, top_n: int) -> StepLogprobs:
        logits = self.logits(batch_index)
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
        top: tuple[TokenLogprob, ...] = ()
        if top_n > 0:
            best = np.argpartition(-logits, top_n)[:top_n]
            best = best[np.argsort(-logits[best], kind="stable")]
            top = tuple(self._token_logprob(int(t), float(logits[t]) - log_total) for t in best)
        return StepLogprobs(self._token_logprob(chosen, float(logits[chosen]) - log_total), top)

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        return TokenLogprob(token, self.piece(token).decode("utf-8", errors="replace"), logprob)
