"""Session resumption: after each turn a session's state is stored under a new handle, so that a client
can continue the conversation later, on any replica and after a restart (handles expire as Google's)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from localgem import errors
from localgem.auth.keys import digest
from localgem.live.wire import LiveSetup
from localgem.storage.live import LiveStateRepository
from localgem.storage.records import LiveStateRecord
from localgem.types.content import Content
from localgem.types.wire import parse_message


@dataclass(frozen=True)
class SavedSession:
    session_id: str
    setup: LiveSetup
    history: list[Content]


class LiveStates:
    def __init__(self, repository: LiveStateRepository, clock: Callable[[], datetime], ttl: timedelta) -> None:
        self._repository = repository
        self._clock = clock
        self._ttl = ttl

    async def save(self, project: str, session_id: str, setup: LiveSetup, history: list[Content]) -> str:
        """Store the state; returns its new handle (the session's earlier handles stop working)."""
        handle = secrets.token_urlsafe(24)
        state = {"setup": setup.to_wire(), "history": [content.to_wire() for content in history]}
        now = self._clock()
        await self._repository.save(
            LiveStateRecord(digest(handle), project, session_id, json.dumps(state), now, now + self._ttl)
        )
        return handle

    async def resume(self, project: str, handle: str) -> SavedSession:
        record = await self._repository.get(digest(handle))
        if record is None or record.project != project or record.expire_time <= self._clock():
            raise errors.NotFound(
                "The session resumption handle is not valid: unknown, replaced by a later handle, or expired."
            )
        state = json.loads(record.state)
        return SavedSession(
            record.session_id,
            parse_message(LiveSetup, state["setup"]),
            [parse_message(Content, content) for content in state["history"]],
        )

    async def sweep(self) -> int:
        return await self._repository.sweep(self._clock())
