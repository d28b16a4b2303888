"""llama.cpp on the CPU: a GGUF model served by a continuous-batching scheduler.

The weights are loaded once; one scheduler thread owns the context and decodes all running
requests together (see ``scheduler``). The event loop only submits jobs and reads their events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path

from localgem import errors
from localgem.engines.base import (
    PICTURE_MARKER,
    CandidateFinished,
    DeadlineReached,
    EngineCapabilities,
    EngineEvent,
    EngineStats,
    GenerationRequest,
    ModelInfo,
    OutputConstraint,
    Picture,
    SamplingParams,
    tokenize_in_process,
)
from localgem.engines.llama.constraints import grammar_for
from localgem.engines.llama.native import PROMPT_CELLS_MULTIPLE, NativeModel
from localgem.engines.llama.prefixes import PrefixStore
from localgem.engines.llama.scheduler import MIN_CHUNK, Job, Scheduler
from localgem.one_thread import in_a_thread_of_its_own


class LlamaCppEngine:
    def __init__(
        self,
        path: Path,
        *,
        context_length: int,
        threads: int | None = None,
        slots: int = 8,
        max_queue: int = 64,
        prefill_chunk: int = MIN_CHUNK,
        flash_attention: bool = True,
        batch_invariant: bool = True,
        key_type: str = "f16",
        sliding_window_full: bool = True,
        prefixes: PrefixStore | None = None,
        niceness: int = 0,
        reuse_prefixes: bool = True,
        repetition_stop: int = 0,
        mmproj: Path | None = None,
    ) -> None:
        self._prefixes = prefixes or PrefixStore(None, ram_bytes=0, disk_bytes=0)
        self._native = NativeModel(
            path,
            slots=slots,
            sequence_length=context_length,
            batch_size=max(512, prefill_chunk + MIN_CHUNK + PROMPT_CELLS_MULTIPLE, 2 * slots),  # + filler rows
            flash_attention=flash_attention,
            batch_invariant=batch_invariant,
            key_type=key_type,
            sliding_window_full=sliding_window_full,
            threads=threads,
            mmproj=mmproj,
        )
        self._prefixes.computed_in(self._native.attention_mode)
        self.info: ModelInfo = self._native.info
        self.stats = EngineStats()
        self.capabilities = EngineCapabilities(
            constrained_output=True,
            kept_prefixes=True,
            logprobs=True,
            images=self._native.vision is not None,
            adapters=True,
        )
        self._scheduler = Scheduler(
            self._native,
            max_queue=max_queue,
            prefill_chunk=prefill_chunk,
            stats=self.stats,
            prefixes=self._prefixes,
            niceness=niceness,
            reuse_prefixes=reuse_prefixes,
            repetition_stop=repetition_stop,
        )

    async def tokenize(self, text: str, add_bos: bool = False, pictures: Sequence[Picture] = ()) -> list[int]:
        vision = self._native.vision
        if vision is not None and PICTURE_MARKER in text:
            return await in_a_thread_of_its_own("vision", vision.tokenize, text, add_bos, pictures)  # see one_thread
        return await tokenize_in_process(self._native.tokenize, text, add_bos)

    def check_constraint(self, constraint: OutputConstraint) -> None:
        """Its grammar must build, and llama.cpp must parse it over this model's vocabulary."""
        self._native.check_grammar(grammar_for(constraint))

    async def keep_prefix(self, key: str, prompt: list[int]) -> None:
        request = GenerationRequest(
            prompt_tokens=prompt, sampling=SamplingParams(temperature=0), max_tokens=1, keep_as=key
        )
        async for _ in self.generate(request):
            pass
        await asyncio.to_thread(self._prefixes.save, key)

    async def drop_prefix(self, key: str) -> None:
        await asyncio.to_thread(self._prefixes.drop, key)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[EngineEvent, None]:
        key = request.prefix_key
        # Held in RAM: no thread hop; else it may be on disk (a restart, or evicted from RAM).
        if (
            key is not None
            and self._prefixes.get(key) is None
            and await asyncio.to_thread(self._prefixes.load, key) is None
        ):
            request = replace(request, keep_as=key)  # kept nowhere (evicted): keep it again from this prompt
        async with aclosing(self._run(request)) as events:  # a consumer that leaves frees the slots at once
            async for event in events:
                yield event
        if request.keep_as is not None and request.prefix_key is not None:
            await asyncio.to_thread(self._prefixes.save, request.keep_as)

    async def _run(self, request: GenerationRequest) -> AsyncGenerator[EngineEvent, None]:
        # The scheduler enforces grammars: the constraint becomes one here (built once, when it was checked).
        grammar = grammar_for(request.constraint) if request.constraint is not None else None
        job = Job(request, asyncio.get_running_loop(), grammar)
        if self._native.vision is not None and any(token < 0 for token in request.prompt_tokens):
            if request.prompt_tokens[-1] < 0:
                raise errors.InvalidArgument("A prompt must not end with an image.")
            job.media = await in_a_thread_of_its_own("vision", self._native.vision.media, request.prompt_tokens)
        self._scheduler.submit(job)  # a full queue answers now, before any work
        remaining = request.candidates
        try:
            while remaining:
                batch = await job.events.get()
                if isinstance(batch, BaseException):
                    remaining = 0
                    raise batch
                for event in batch:
                    if isinstance(event, CandidateFinished):
                        remaining -= 1
                    elif isinstance(event, DeadlineReached):
                        remaining = 0
                    yield event
        finally:
            if remaining:  # the consumer left early: free the slots at the next turn
                job.cancelled.set()
                self._scheduler.wake()

    def healthy(self) -> bool:
        return self._scheduler.healthy(time.monotonic())

    async def close(self) -> None:
        await asyncio.to_thread(self._scheduler.close)
        self._native.close()
