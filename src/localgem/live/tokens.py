"""Ephemeral tokens (``auth_tokens.create``): short-lived keys a browser may hold, good only for Live
sessions on the constrained endpoint, optionally locking the session's setup."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic.alias_generators import to_camel

from localgem import errors
from localgem.auth.keys import digest
from localgem.live.wire import AuthToken, LiveSetup
from localgem.storage.live import AuthTokenRepository
from localgem.storage.records import AuthTokenRecord
from localgem.types.wire import parse_message

PREFIX = "auth_tokens/"
#: Google's defaults and limit (AuthToken reference).
DEFAULT_LIFETIME = timedelta(minutes=30)
DEFAULT_NEW_SESSION_WINDOW = timedelta(seconds=60)
MAX_LIFETIME = timedelta(hours=20)
USED_UP = "The ephemeral token has been used up (uses)."


@dataclass(frozen=True)
class TokenGrant:
    """What a presented token allows: its project, until when, and the setup it imposes."""

    project: str
    expire_time: datetime
    setup: dict[str, Any] | None
    field_mask: list[str]
    #: The token, while a use is still to be spent on the new session it opens.
    token: str | None = None

    def effective_setup(self, requested: LiveSetup) -> LiveSetup:
        """Google's rule: no locked setup → the client's; a locked setup without a mask → the locked one
        entirely; with a mask → the client's, with the masked fields taken from the locked one."""
        if self.setup is None:
            return requested
        client = requested.to_wire()
        if not self.field_mask:
            merged = dict(self.setup)
            if "sessionResumption" in client:  # where to resume is not configuration: it stays the client's
                merged["sessionResumption"] = client["sessionResumption"]
        else:
            merged = client
            for path in self.field_mask:
                _copy_path(self.setup, merged, path.split("."))
        return parse_message(LiveSetup, merged)


def _copy_path(source: dict[str, Any], target: dict[str, Any], path: list[str]) -> None:
    head, rest = path[0], path[1:]
    if not rest:
        if head in source:
            target[head] = source[head]
        else:
            target.pop(head, None)
        return
    inner_source = source.get(head)
    if not isinstance(inner_source, dict):
        target.pop(head, None)
        return
    inner_target = target.get(head)
    if not isinstance(inner_target, dict):
        inner_target = target[head] = {}
    _copy_path(inner_source, inner_target, rest)


def is_token(key: str | None) -> bool:
    return bool(key) and key.startswith(PREFIX)  # type: ignore[union-attr]


class AuthTokens:
    def __init__(self, repository: AuthTokenRepository, clock: Callable[[], datetime]) -> None:
        self._repository = repository
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def create(
        self, project: str, body: AuthToken, validate_setup: Callable[[LiveSetup], Awaitable[None]]
    ) -> AuthToken:
        now = self._clock()
        expire = self._time("expire_time", body.expire_time, now, now + DEFAULT_LIFETIME)
        new_sessions = self._time(
            "new_session_expire_time", body.new_session_expire_time, now, now + DEFAULT_NEW_SESSION_WINDOW
        )
        uses = 1 if body.uses is None else body.uses
        if uses < 0:
            raise errors.invalid_field("uses", "uses must not be negative (0: no limit).")
        if body.name:
            raise errors.invalid_field("name", "The token's name is chosen by the server.")
        setup = body.bidi_generate_content_setup
        mask = _mask_paths(body.field_mask)
        if mask and setup is None:
            raise errors.invalid_field("field_mask", "fieldMask names fields of bidiGenerateContentSetup: set it.")
        if setup is not None:
            await validate_setup(setup)
            wire = setup.to_wire()
            known = set(LiveSetup.model_fields) | {to_camel(name) for name in LiveSetup.model_fields}
            for path in mask:
                if path.split(".")[0] not in known:
                    raise errors.invalid_field("field_mask", f"fieldMask path {path!r} is not a field of the setup.")
        token = PREFIX + secrets.token_urlsafe(32)
        await self._repository.add(
            AuthTokenRecord(
                digest=digest(token),
                project=project,
                uses_left=uses or None,
                expire_time=expire,
                new_session_expire_time=min(new_sessions, expire),
                setup=json.dumps(wire) if setup is not None else None,
                field_mask=",".join(mask) or None,
                create_time=now,
            )
        )
        return AuthToken(name=token)

    def _time(self, field: str, raw: str | None, now: datetime, default: datetime) -> datetime:
        if raw is None:
            return default
        value = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value <= now:
            raise errors.invalid_field(field, f"{to_camel(field)} must be in the future.")
        if value > now + MAX_LIFETIME:
            raise errors.invalid_field(field, f"{to_camel(field)} must be less than 20 hours in the future.")
        return value

    async def grant(self, token: str, *, new_session: bool) -> TokenGrant:
        """Check a presented token (a new session also needs its newSessionExpireTime ahead and a use
        left, spent by ``spend`` once the session is accepted; resuming one costs none)."""
        record = await self._repository.get(digest(token))
        now = self._clock()
        if record is None:
            raise errors.Unauthenticated("The ephemeral token is not valid.")
        if record.expire_time <= now:
            raise errors.Unauthenticated("The ephemeral token has expired.")
        if new_session:
            if record.new_session_expire_time <= now:
                raise errors.Unauthenticated("The ephemeral token starts no new sessions after newSessionExpireTime.")
            if record.uses_left == 0:
                raise errors.Unauthenticated(USED_UP)
        return TokenGrant(
            project=record.project,
            expire_time=record.expire_time,
            setup=json.loads(record.setup) if record.setup else None,
            field_mask=record.field_mask.split(",") if record.field_mask else [],
            token=token if new_session else None,
        )

    async def spend(self, grant: TokenGrant) -> None:
        """Spend the use a new session takes, as it is accepted (a refused session spends none)."""
        if grant.token is not None and not await self._repository.take_use(digest(grant.token)):
            raise errors.Unauthenticated(USED_UP)

    async def sweep(self) -> int:
        return await self._repository.sweep(self._clock())


def _mask_paths(raw: str | None) -> list[str]:
    paths = [path.strip() for path in (raw or "").split(",") if path.strip()]
    return [".".join(to_camel(part) for part in path.split(".")) for path in paths]
