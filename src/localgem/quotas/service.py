"""Quotas: requests per minute and per day, input tokens per minute, requests at once, per project and model.

A request is admitted before it runs (its input tokens counted) or refused with Google's 429: the message, and
the details the SDKs parse (``google.rpc.Help``, ``google.rpc.QuotaFailure`` naming the metric, quota id and
limit, ``google.rpc.RetryInfo`` with the delay until the window that refused it ends). Windows are fixed: a
minute (``quota_minute_seconds``) or a UTC day, the same on every server, counted in the database.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from localgem import errors, names
from localgem.settings import QuotaRule
from localgem.storage.quotas import Charge, QuotaRepository, Seat

log = logging.getLogger(__name__)

DAY = 86_400
#: A running request's seat is held at most this long: a server that died frees its seats when they expire.
LEASE_SECONDS = 900
RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"


@dataclass(frozen=True)
class _Limit:
    field: str  # the QuotaRule field
    metric: str  # after "generativelanguage.googleapis.com/<family>_"
    quota_id: str  # "{Family}" is replaced by GenerateContent / EmbedContent


LIMITS = (
    _Limit("requests_per_minute", "requests", "{Family}RequestsPerMinutePerProjectPerModel"),
    _Limit("tokens_per_minute", "input_token_count", "{Family}InputTokensPerModelPerMinute"),
    _Limit("requests_per_day", "requests", "{Family}RequestsPerDayPerProjectPerModel"),
    _Limit("concurrent_requests", "concurrent_requests", "{Family}ConcurrentRequestsPerProjectPerModel"),
)
#: What a quota counts: the method family (Google counts generation and embedding apart).
FAMILIES = {"generate_content": "GenerateContent", "embed_content": "EmbedContent"}


@dataclass(frozen=True)
class Ticket:
    """An admitted request: ``release`` (always, when it ends) frees its seats."""

    _quotas: Quotas | None
    _lease: str

    async def release(self) -> None:
        if self._quotas is not None:
            await self._quotas.release(self._lease)


NO_TICKET = Ticket(None, "")


@dataclass(frozen=True)
class _Check:
    limit: _Limit
    rule: QuotaRule
    value: int
    bucket: str
    window: int  # seconds; 0 for a seat


class Quotas:
    def __init__(
        self,
        rules: Sequence[QuotaRule],
        repository: QuotaRepository,
        minute: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = tuple(rules)
        self._repository = repository
        self._minute = minute
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._rules)

    async def admit(
        self, family: str, project: str, key: str | None, model_id: str, requested: str, tokens: int
    ) -> Ticket:
        """Counts one request of ``tokens`` input tokens, or raises ResourceExhausted (nothing counted then)."""
        checks = self._checks(family, project, key or "", model_id, requested.removeprefix("models/"))
        if not checks:
            return NO_TICKET
        now = self._clock()
        charges: dict[Charge, _Check] = {}
        seats: dict[Seat, _Check] = {}
        for check in checks:
            if check.window:
                amount = tokens if check.limit.field == "tokens_per_minute" else 1
                start = int(now // check.window * check.window)
                charges[Charge(check.bucket, start, amount, check.value)] = check
            else:
                seats[Seat(check.bucket, check.value)] = check
        lease = names.new_id()
        instant = datetime.fromtimestamp(now, UTC)
        try:
            exceeded = await self._repository.take(
                list(charges), list(seats), lease, instant + timedelta(seconds=LEASE_SECONDS), instant
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not count quotas: %s", str(exc) or type(exc).__name__)
            raise errors.Unavailable("The quota counters cannot be read now. Please retry.") from None
        if exceeded:
            found = [charges[item] if isinstance(item, Charge) else seats[item] for item in exceeded]  # type: ignore[index]
            delays = [
                item.window_start + charges[item].window - now if isinstance(item, Charge) else 1.0 for item in exceeded
            ]
            raise quota_exceeded(family, model_id, found, max(delays))
        return Ticket(self, lease) if seats else NO_TICKET

    async def release(self, lease: str) -> None:
        try:
            await self._repository.release(lease)
        except (SQLAlchemyError, OSError) as exc:  # the seat frees itself when its lease expires
            log.warning("could not free a quota seat: %s", str(exc) or type(exc).__name__)

    def _checks(self, family: str, project: str, key: str, model_id: str, requested: str) -> list[_Check]:
        checks = []
        for rule in self._rules:
            if not fnmatch.fnmatchcase(project, rule.project):
                continue
            if not (fnmatch.fnmatchcase(model_id, rule.model) or fnmatch.fnmatchcase(requested, rule.model)):
                continue
            if rule.key is not None and not key.startswith(rule.key):
                continue
            scope = f"{_fingerprint(rule)}:{project}:{model_id}:{rule.key or ''}"
            for limit in LIMITS:
                value = getattr(rule, limit.field)
                if value is None:
                    continue
                window = {"requests_per_day": DAY, "concurrent_requests": 0}.get(limit.field, self._minute)
                checks.append(_Check(limit, rule, value, f"{family}:{limit.field}:{scope}", window))
        return checks


def _fingerprint(rule: QuotaRule) -> str:
    """Tells rules apart in the counters' names: the same on every server with the same rule."""
    return f"{zlib.crc32(f'{rule.project}|{rule.model}|{rule.key}'.encode()):08x}"


def quota_exceeded(family: str, model_id: str, checks: Sequence[_Check], delay: float) -> errors.ResourceExhausted:
    delay = max(delay, 0.001)
    lines = []
    violations: list[dict[str, Any]] = []
    for check in checks:
        metric = f"{errors.SERVICE}/{family}_{check.limit.metric}"
        quota_id = check.limit.quota_id.format(Family=FAMILIES[family]) + ("PerApiKey" if check.rule.key else "")
        lines.append(f"* Quota exceeded for metric: {metric}, limit: {check.value}, model: {model_id}")
        violations.append(
            {
                "quotaMetric": metric,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": model_id},
                "quotaValue": str(check.value),
            }
        )
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        f"this error, head to: {RATE_LIMITS_URL}. \n" + "\n".join(lines) + f"\nPlease retry in {delay:.6g}s."
    )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}],
        },
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{math.ceil(delay)}s"},
    ]
    return errors.ResourceExhausted(message, details)
