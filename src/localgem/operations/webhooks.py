"""Webhooks: POST an event to the client's URLs when a batch reaches its final state, as Google's
dynamic webhooks (``batch.webhookConfig``) do.

Deliveries wait in the database (see ``storage.webhooks``): queued together with the batch's mark,
attempted off the request path by whichever server runs the delivery duty (``step``, on the operations
``Worker``), retried with exponential backoff for up to a day, and kept across restarts. Any 2xx
acknowledges one; anything else (another status, a redirect, a timeout, a refused connection) is retried.

Each POST is signed the Standard Webhooks way, as Google signs its webhooks: ``webhook-id`` (the same on
every attempt: deduplicate on it), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 over ``{id}.{timestamp}.{body}``, keyed by the base64 after the
``whsec_`` prefix of the project's signing secret; ``localgem webhooks secret`` prints it). Google
signs per-request webhooks with an RS256 JWT from its own keys instead; no server but Google's can
produce those, so localgem signs every webhook with the project's secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from localgem import __version__, errors, names
from localgem.batches.wire import WebhookConfig
from localgem.operations.model import Operation
from localgem.storage.records import BatchRecord, WebhookDelivery
from localgem.storage.webhooks import WebhookRepository
from localgem.types.wire import rfc3339

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

EVENT_TYPES = {
    "BATCH_STATE_SUCCEEDED": "batch.succeeded",
    "BATCH_STATE_FAILED": "batch.failed",
    "BATCH_STATE_CANCELLED": "batch.cancelled",
    "BATCH_STATE_EXPIRED": "batch.expired",
}
MAX_URIS = 10
MAX_URI_LENGTH = 2048
#: Settled deliveries are forgotten after this long.
KEEP_SETTLED = timedelta(days=7)


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 5.0  # seconds before the first retry, doubling after each failure
    longest_delay: float = 3600.0
    give_up_after: float = 24 * 3600.0  # since the delivery was queued (Google retries for 24 h)
    timeout: float = 10.0  # for one attempt, connecting included

    def delay(self, attempts: int) -> float:
        return min(self.first_delay * 2 ** max(attempts - 1, 0), self.longest_delay)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str


class WebhookService:
    def __init__(
        self,
        repository: WebhookRepository,
        clock: Clock,
        *,
        policy: RetryPolicy | None = None,
        parallel: int = 4,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """``wake``: brings the delivery duty's next ``step`` forward (deliveries were queued)."""
        self._repo = repository
        self._clock = clock
        self.policy = policy or RetryPolicy()
        self._parallel = parallel
        self._wake = wake
        self._pool: ThreadPoolExecutor | None = None
        self._pruned_at = 0.0

    # -- configuration (on the request path: validation only) ------------------------------------

    def stored_config(self, config: WebhookConfig | None, field: str) -> str | None:
        """A batch's webhookConfig as stored (JSON), or a 400 naming what is wrong with it."""
        if config is None:
            return None
        uris = config.uris or []
        if not uris:
            raise errors.invalid_field(
                f"{field}.uris",
                f"{field}.uris is required: localgem has no project-level webhooks (the WebhookService API), "
                "so a batch's webhooks are the URIs it names.",
            )
        if len(uris) > MAX_URIS:
            raise errors.invalid_field(f"{field}.uris", f"{field}.uris may name at most {MAX_URIS} URIs.")
        for index, uri in enumerate(uris):
            check_url(uri, f"{field}.uris[{index}]")
        stored: dict[str, Any] = {"uris": list(dict.fromkeys(uris))}
        if config.user_metadata is not None:
            stored["userMetadata"] = config.user_metadata
        return json.dumps(stored)

    async def signing_secret(self, project: str) -> str:
        """The project's signing secret, made on first use."""
        existing = await self._repo.secret(project)
        if existing is not None:
            return existing
        return await self._repo.add_secret(project, new_secret(), self._clock())

    # -- queueing ----------------------------------------------------------------------------------

    async def queue(self, batch: BatchRecord, operation: Operation) -> bool:
        """Queues the event of ``batch`` (in a final state) for each of its URIs; False if already queued."""
        config = json.loads(batch.webhook_config or "{}")
        event = batch_event(batch, operation.to_wire(), config.get("userMetadata"))
        payload = json.dumps(event, separators=(",", ":"))
        now = self._clock()
        deliveries = [
            WebhookDelivery(
                project=batch.project,
                id=f"msg_{names.new_id(24)}",
                batch_id=batch.id,
                url=url,
                payload=payload,
                state="PENDING",
                attempts=0,
                next_attempt=now,
                create_time=now,
                update_time=now,
            )
            for url in config.get("uris", [])
        ]
        queued = await self._repo.queue(batch, deliveries)
        if queued and self._wake is not None:
            self._wake()
        return queued

    # -- delivering --------------------------------------------------------------------------------

    async def step(self) -> float | None:
        """A ``Worker`` step: delivers what is due; seconds until the next delivery is due (None: none is)."""
        await self.deliver_due()
        if time.monotonic() - self._pruned_at > 3600:
            await self._repo.prune(self._clock() - KEEP_SETTLED)
            self._pruned_at = time.monotonic()
        next_due = await self._repo.next_due()
        return None if next_due is None else (next_due - self._clock()).total_seconds()

    def close(self) -> None:
        """Stops the threads that POST (once the delivery duty has stopped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def deliver_due(self) -> int:
        """Attempts every delivery due now (``parallel`` at a time); how many were attempted."""
        attempted = 0
        while due := await self._repo.due(self._clock(), self._parallel * 4):
            results = await _bounded(self._parallel, [self._attempt(d) for d in due])
            attempted += sum(results)
            if len(due) < self._parallel * 4:
                break
        return attempted

    async def _attempt(self, delivery: WebhookDelivery) -> bool:
        now = self._clock()
        # Not due again while this attempt may still be running (a dead server's claim lapses).
        mine = await self._repo.claim(delivery, now, now + timedelta(seconds=self.policy.timeout * 3))
        if mine is None:
            return False
        secret = await self.signing_secret(mine.project)
        outcome = await self._post(mine, secret)
        now = self._clock()
        if outcome.ok:
            await self._repo.delivered(mine, now)
            log.info("webhook %s for batches/%s delivered to %s", mine.id, mine.batch_id, mine.url)
            return True
        retry_at = now + timedelta(seconds=self.policy.delay(mine.attempts))
        if (retry_at - mine.create_time).total_seconds() > self.policy.give_up_after:
            log.warning(
                "webhook %s for batches/%s to %s given up after %s attempts: %s",
                mine.id,
                mine.batch_id,
                mine.url,
                mine.attempts,
                outcome.detail,
            )
            await self._repo.failed(mine, outcome.detail, now, None)
        else:
            log.info("webhook %s attempt %s to %s failed: %s", mine.id, mine.attempts, mine.url, outcome.detail)
            await self._repo.failed(mine, outcome.detail, now, retry_at)
        return True

    async def _post(self, delivery: WebhookDelivery, secret: str) -> Outcome:
        body = delivery.payload.encode("utf-8")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"localgem/{__version__} (webhooks)",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, delivery.id, timestamp, body),
        }
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="webhooks")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _send, delivery.url, body, headers, self.policy.timeout)


def batch_event(batch: BatchRecord, operation: dict[str, Any], user_metadata: Any) -> dict[str, Any]:
    """The event a batch's webhooks receive: its type, when it happened, and the batch (the Operation as
    batches.list returns it: state, counts and, for a file batch, its responsesFile; inline responses
    are left to batches.get)."""
    data: dict[str, Any] = {"id": f"batches/{batch.id}", "state": batch.state, "operation": operation}
    if batch.responses_file is not None:
        data["file_name"] = f"files/{batch.responses_file}"
    if user_metadata is not None:
        data["user_metadata"] = user_metadata
    return {
        "type": EVENT_TYPES[batch.state],
        "version": "v1",
        "timestamp": rfc3339(batch.end_time or batch.update_time),
        "data": data,
    }


def check_url(uri: Any, field: str) -> None:
    """An absolute http(s) URL, or a 400: a webhook is an HTTP POST."""
    problem = None
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        problem = f"must be a URL of at most {MAX_URI_LENGTH} characters"
    elif any(ord(c) <= 32 or ord(c) == 127 for c in uri):
        problem = "must not contain spaces or control characters"
    else:
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            problem = "must be an absolute http:// or https:// URL"
    if problem:
        shown = uri[:100] if isinstance(uri, str) else repr(uri)
        raise errors.invalid_field(field, f"Invalid webhook URI {shown!r} at '{field}': it {problem}.")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' ``webhook-signature`` value."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is not an acknowledgement: the attempt fails with the 3xx


# Direct connections: a proxy from the environment must not swallow loopback receivers.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def _send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """One POST (blocking; runs on the webhook threads)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return Outcome(False, f"HTTP {exc.code}")
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timeout, TLS, bad reply
        return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(200 <= status < 300, f"HTTP {status}")


async def _bounded(limit: int, work: list[Awaitable[bool]]) -> list[bool]:
    semaphore = asyncio.Semaphore(limit)

    async def one(item: Awaitable[bool]) -> bool:
        async with semaphore:
            return await item

    return await asyncio.gather(*(one(item) for item in work))
