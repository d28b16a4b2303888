"""A model loaded on first use, in a worker thread, once. A caller that stops waiting (its request
cancelled) does not cancel the load: the next caller gets the same load, not a second copy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from localgem.one_thread import in_a_thread_of_its_own

T = TypeVar("T")


class LazyModel(Generic[T]):
    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._task: asyncio.Future[T] | None = None

    async def get(self) -> T:
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        if task is None or task.done():  # not started yet, or the last try failed: try (again)
            task = self._task = asyncio.ensure_future(in_a_thread_of_its_own("load", self._load))
        return await asyncio.shield(task)
