"""llama.cpp on the CPU, through llama-cpp-python's low-level bindings.

One worker thread owns the model's context and serves requests one after another, so the event
loop never waits on inference. The batched scheduler (one decode step for all running requests)
replaces ``_Worker``; the ``Engine`` contract stays the same.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from localgem import errors
from localgem.engines.base import (
    CandidateFinished,
    DeadlineReached,
    EngineEvent,
    EngineStats,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    SamplingParams,
    StepLogprobs,
    TextDelta,
    TokenLogprob,
)
from localgem.engines.text import TextAssembler

log = logging.getLogger(__name__)

_backend_lock = threading.Lock()


def _llama():  # imported lazily: loading the shared library is work, not for import time
    import llama_cpp

    return llama_cpp


_backend_state: dict[str, object] = {}
_NATIVE_ERROR = 4  # ggml_log_level: 1 debug, 2 info, 3 warn (mostly model quirks), 4 error, 5 continuation


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


@dataclass
class _Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[EngineEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: EngineEvent | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self.cancelled.set()


class _Aborted(Exception):
    pass


class LlamaCppEngine:
    """A GGUF model served by llama.cpp."""

    def __init__(
        self, path: Path, *, context_length: int | None = None, threads: int | None = None, batch_size: int = 512
    ) -> None:
        _init_backend()
        lc = _llama()
        self._lc = lc
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise errors.Internal(f"llama.cpp could not load the model file {path}")
        self._vocab = lc.llama_model_get_vocab(self._model)
        trained = lc.llama_model_n_ctx_train(self._model)
        n_threads = threads or os.cpu_count() or 1
        ctx_params = lc.llama_context_default_params()
        ctx_params.n_ctx = min(context_length or trained, trained)
        ctx_params.n_batch = batch_size
        ctx_params.n_ubatch = batch_size
        ctx_params.n_seq_max = 1
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        ctx_params.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            lc.llama_model_free(self._model)
            raise errors.Internal(f"llama.cpp could not create a context for {path}")
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch_size = batch_size
        self._batch = lc.llama_batch_init(batch_size, 0, 1)
        self._n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self.info = ModelInfo(
            context_length=lc.llama_n_ctx(self._ctx),
            trained_context_length=trained,
            vocab_size=self._n_vocab,
            chat_template=self._chat_template(),
            bos_token=self._token_text(lc.llama_vocab_bos(self._vocab)),
            eos_token=self._token_text(lc.llama_vocab_eos(self._vocab)),
            add_bos=bool(lc.llama_vocab_get_add_bos(self._vocab)),
        )
        self.stats = EngineStats()
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"llama.cpp {path.name}", daemon=True)
        self._thread.start()

    # -- metadata -------------------------------------------------------------------------------

    def _chat_template(self) -> str | None:
        raw = self._lc.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8") if raw else None

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self._lc.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    # -- Engine contract ------------------------------------------------------------------------

    async def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return await asyncio.to_thread(self._tokenize, text, add_bos)

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (self._lc.llama_token * capacity)()
        n = self._lc.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_bos, True)
        if n < 0:
            raise errors.Internal("llama.cpp failed to tokenize the prompt")
        return list(tokens[:n])

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineEvent, None]:
        job = _Job(request, asyncio.get_running_loop())
        self._jobs.put(job)
        remaining = request.candidates
        try:
            while remaining:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, CandidateFinished):
                    remaining -= 1
                yield event
                if isinstance(event, DeadlineReached):
                    return
        finally:
            job.cancelled.set()

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._lc.llama_batch_free(self._batch)
        self._lc.llama_free(self._ctx)
        self._lc.llama_model_free(self._model)

    # -- worker thread --------------------------------------------------------------------------

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.cancelled.is_set():
                self.stats.requests_aborted += 1
                continue
            self.stats.requests_started += 1
            try:
                self._run(job)
                self.stats.requests_finished += 1
            except _Aborted:
                self.stats.requests_aborted += 1
            except errors.ApiError as exc:
                job.emit(exc)
            except Exception as exc:  # the request fails; the engine keeps serving
                log.exception("llama.cpp generation failed")
                job.emit(errors.Internal(f"Generation failed: {exc}"))

    def _run(self, job: _Job) -> None:
        request = job.request
        prompt = request.prompt_tokens
        self.stats.last_request_tokens_generated = 0
        self._lc.llama_memory_clear(self._memory, True)
        self._decode(prompt, 0, job)
        self.stats.prompt_tokens_evaluated += len(prompt)
        for index in range(request.candidates):
            if index:  # rewind to the end of the prompt, recomputing only its last token's logits
                self._lc.llama_memory_seq_rm(self._memory, 0, len(prompt) - 1, -1)
                self._decode(prompt[-1:], len(prompt) - 1, job)
                self.stats.prompt_tokens_evaluated += 1
            self._candidate(job, index)

    def _candidate(self, job: _Job, index: int) -> None:
        request = job.request
        sampler = self._sampler(request.sampling, index, request.max_tokens)
        text = TextAssembler(request.stop_sequences)
        position, produced = len(request.prompt_tokens), 0
        reason, stopped = FinishReason.MAX_TOKENS, False
        try:
            while True:
                self._check(job)
                token = self._lc.llama_sampler_sample(sampler, self._ctx, -1)
                step = self._step_logprobs(token, request.logprobs) if request.logprobs is not None else None
                if self._lc.llama_vocab_is_eog(self._vocab, token):
                    reason = FinishReason.STOP
                    break
                produced += 1
                self.stats.tokens_generated += 1
                self.stats.last_request_tokens_generated += 1
                released = text.push(self._piece(token), step)
                if released.text or released.logprobs:
                    job.emit(TextDelta(index, released.text, released.logprobs))
                if released.stopped:
                    reason, stopped = FinishReason.STOP, True
                    break
                if produced >= request.max_tokens or position + 1 >= self.info.context_length:
                    break
                self._decode([token], position, job)
                position += 1
            if not stopped:
                tail = text.finish()
                if tail.text or tail.logprobs:
                    job.emit(TextDelta(index, tail.text, tail.logprobs))
            job.emit(CandidateFinished(index, reason, produced))
        finally:
            self._lc.llama_sampler_free(sampler)

    def _check(self, job: _Job) -> None:
        """Between decode steps: stop for a client that left or a deadline that passed."""
        if job.cancelled.is_set():
            raise _Aborted
        if job.request.deadline is not None and time.monotonic() > job.request.deadline:
            job.emit(DeadlineReached())
            raise _Aborted

    def _decode(self, tokens: list[int], start: int, job: _Job) -> None:
        batch = self._batch
        for offset in range(0, len(tokens), self._batch_size):
            self._check(job)
            chunk = tokens[offset : offset + self._batch_size]
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = False
            batch.logits[len(chunk) - 1] = True
            batch.n_tokens = len(chunk)
            status = self._lc.llama_decode(self._ctx, batch)
            if status != 0:
                raise errors.Internal(f"llama.cpp decode failed with status {status}")

    def _sampler(self, params: SamplingParams, index: int, max_tokens: int):
        lc = self._lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if params.presence_penalty or params.frequency_penalty:
            # Only generated tokens are accepted into the sampler, so penalties cover the response.
            lc.llama_sampler_chain_add(
                chain,
                lc.llama_sampler_init_penalties(
                    self._n_vocab, max_tokens, 1.0, params.frequency_penalty, params.presence_penalty
                ),
            )
        if params.temperature <= 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(params.temperature))
        seed = secrets.randbits(31) if params.seed is None else params.seed + index
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed % 0xFFFFFFFF))
        return chain

    def _piece(self, token: int) -> bytes:
        n = self._lc.llama_token_to_piece(self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False)
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            n = self._lc.llama_token_to_piece(self._vocab, token, self._piece_buffer, -n, 0, False)
        return self._piece_buffer.raw[:n]

    def _step_logprobs(self, chosen: int, top_n: int) -> StepLogprobs:
        logits = np.ctypeslib.as_array(self._lc.llama_get_logits_ith(self._ctx, -1), shape=(self._n_vocab,))
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
        top: tuple[TokenLogprob, ...] = ()
        if top_n > 0:
            best = np.argpartition(-logits, top_n)[:top_n]
            best = best[np.argsort(-logits[best], kind="stable")]
            top = tuple(self._token_logprob(int(t), float(logits[t]) - log_total) for t in best)
        return StepLogprobs(self._token_logprob(chosen, float(logits[chosen]) - log_total), top)

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        return TokenLogprob(token, self._piece(token).decode("utf-8", errors="replace"), logprob)
