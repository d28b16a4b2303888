"""The Live sessions open on this server: per-project limits, and goAway for everyone at shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from localgem import errors


@dataclass(frozen=True)
class LiveLimits:
    sessions_per_project: int = 16
    idle_timeout: float = 600.0
    max_session: float = 15 * 60.0
    go_away: float = 10.0
    max_message_bytes: int = 8 * 1024 * 1024


GoAway = Callable[[float], Awaitable[None]]


class LiveHub:
    def __init__(self, limits: LiveLimits) -> None:
        self.limits = limits
        self._per_project: Counter[str] = Counter()
        self._leaving: set[GoAway] = set()
        self.closing = False

    @property
    def open_sessions(self) -> int:
        return sum(self._per_project.values())

    @contextmanager
    def admit(self, project: str, go_away: GoAway) -> Iterator[None]:
        """Hold one of the project's session places for the block; refuse past the limit or when closing."""
        if self.closing:
            raise errors.Unavailable("The server is shutting down; connect again (to another replica).")
        if self._per_project[project] >= self.limits.sessions_per_project:
            raise errors.ResourceExhausted(
                f"Too many concurrent Live sessions for this project ({self.limits.sessions_per_project}); "
                "close one first."
            )
        self._per_project[project] += 1
        self._leaving.add(go_away)
        try:
            yield
        finally:
            self._leaving.discard(go_away)
            self._per_project[project] -= 1
            if not self._per_project[project]:
                del self._per_project[project]

    async def shutdown(self) -> None:
        """Tell every session the server is going (goAway), and let them end within the grace time."""
        self.closing = True
        leaving = list(self._leaving)
        if leaving:
            # A client that stopped reading must not hold the shutdown: each gets the grace time and a second.
            await asyncio.gather(
                *(asyncio.wait_for(go(self.limits.go_away), self.limits.go_away + 1) for go in leaving),
                return_exceptions=True,
            )
