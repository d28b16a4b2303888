"""Threads for models' work off the event loop.

A model that runs one call at a time (Whisper, Piper, OCR) gets a thread of its own (``OneThread``): waiting
callers queue here, without holding threads of the shared pool that file reads, decoding and the database need.

Work that may run an OpenMP parallel region (loading any model, embeddings, drawing, a vision model's picture
encoding in libmtmd) runs on a thread that ends with it
(``in_a_thread_of_its_own``). PyTorch and llama.cpp share the process's OpenMP runtime (libgomp), which keeps a
pool of worker threads for every thread that ever ran a parallel region, for as long as that thread lives; once
those pools hold more threads than the machine has cores, every OpenMP thread waiting at a barrier sleeps almost
at once instead of spinning, and llama.cpp waits at a barrier after each op of a decode step. One embedding call
made the default model generate ~2.8x slower for the rest of the server's life. A thread that ends takes its
pool with it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class OneThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))


async def in_a_thread_of_its_own(name: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on a new thread, which ends once the call returns (even where the caller stopped waiting)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, call, *args)
    finally:
        executor.shutdown(wait=False)
