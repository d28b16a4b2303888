"""Webhook deliveries (an outbox: queued in the database, so they survive restarts) and the per-project
secrets that sign them. Every attempt is claimed by compare-and-set, so two servers never POST the same
delivery at once."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from localgem.storage.database import Database
from localgem.storage.records import BatchRecord, WebhookDelivery
from localgem.storage.tables import batches, webhook_deliveries, webhook_secrets

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"


class WebhookRepository(Protocol):
    async def queue(self, batch: BatchRecord, deliveries: list[WebhookDelivery]) -> bool: ...
    async def due(self, now: datetime, limit: int) -> list[WebhookDelivery]: ...
    async def next_due(self) -> datetime | None: ...
    async def claim(self, delivery: WebhookDelivery, now: datetime, until: datetime) -> WebhookDelivery | None: ...
    async def delivered(self, delivery: WebhookDelivery, now: datetime) -> None: ...
    async def failed(self, delivery: WebhookDelivery, error: str, now: datetime, retry_at: datetime | None) -> None: ...
    async def get(self, project: str, delivery_id: str) -> WebhookDelivery | None: ...
    async def for_batch(self, project: str, batch_id: str) -> list[WebhookDelivery]: ...
    async def prune(self, before: datetime) -> int: ...
    async def secret(self, project: str) -> str | None: ...
    async def add_secret(self, project: str, secret: str, now: datetime) -> str: ...


class SqlWebhookRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def queue(self, batch: BatchRecord, deliveries: list[WebhookDelivery]) -> bool:
        """Marks the batch's webhooks queued and stores their deliveries, together and once: False if
        another server queued them first."""
        mark = (
            update(batches)
            .where(batches.c.project == batch.project, batches.c.id == batch.id, batches.c.webhook_state == "PENDING")
            .values(webhook_state="QUEUED")
        )
        async with self._db.begin() as conn:
            if (await conn.execute(mark)).rowcount != 1:
                return False
            if deliveries:
                await conn.execute(insert(webhook_deliveries), [asdict(d) for d in deliveries])
        return True

    async def due(self, now: datetime, limit: int) -> list[WebhookDelivery]:
        c = webhook_deliveries.c
        query = select(webhook_deliveries).where(c.state == PENDING, c.next_attempt <= now)
        async with self._db.read() as conn:
            rows = await conn.execute(query.order_by(c.next_attempt).limit(limit))
            return [WebhookDelivery(**row._mapping) for row in rows]

    async def next_due(self) -> datetime | None:
        c = webhook_deliveries.c
        async with self._db.read() as conn:
            return (await conn.execute(select(func.min(c.next_attempt)).where(c.state == PENDING))).scalar()

    async def claim(self, delivery: WebhookDelivery, now: datetime, until: datetime) -> WebhookDelivery | None:
        """This attempt is ours (the delivery is not due again before ``until``), unless another took it."""
        c = webhook_deliveries.c
        query = (
            update(webhook_deliveries)
            .where(*_this_attempt(delivery), c.next_attempt == delivery.next_attempt)
            .values(attempts=delivery.attempts + 1, next_attempt=until, update_time=now)
        )
        async with self._db.begin() as conn:
            if (await conn.execute(query)).rowcount != 1:
                return None
        return await self.get(delivery.project, delivery.id)

    async def delivered(self, delivery: WebhookDelivery, now: datetime) -> None:
        await self._settle(delivery, state=DELIVERED, last_error=None, update_time=now)

    async def failed(self, delivery: WebhookDelivery, error: str, now: datetime, retry_at: datetime | None) -> None:
        """After a failed attempt: due again at ``retry_at``, or given up (FAILED) without one."""
        if retry_at is None:
            await self._settle(delivery, state=FAILED, last_error=error, update_time=now)
        else:
            await self._settle(delivery, last_error=error, next_attempt=retry_at, update_time=now)

    async def _settle(self, delivery: WebhookDelivery, **values: object) -> None:
        """Records the outcome of the attempt ``delivery`` was claimed for (a later claim's is not overwritten)."""
        query = update(webhook_deliveries).where(*_this_attempt(delivery)).values(**values)
        async with self._db.begin() as conn:
            await conn.execute(query)

    async def get(self, project: str, delivery_id: str) -> WebhookDelivery | None:
        c = webhook_deliveries.c
        query = select(webhook_deliveries).where(c.project == project, c.id == delivery_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return WebhookDelivery(**row._mapping) if row else None

    async def for_batch(self, project: str, batch_id: str) -> list[WebhookDelivery]:
        c = webhook_deliveries.c
        query = select(webhook_deliveries).where(c.project == project, c.batch_id == batch_id).order_by(c.url)
        async with self._db.read() as conn:
            return [WebhookDelivery(**row._mapping) for row in await conn.execute(query)]

    async def prune(self, before: datetime) -> int:
        """Forgets deliveries settled (delivered or given up) before ``before``."""
        c = webhook_deliveries.c
        query = delete(webhook_deliveries).where(c.state.in_((DELIVERED, FAILED)), c.update_time < before)
        async with self._db.begin() as conn:
            return (await conn.execute(query)).rowcount

    async def secret(self, project: str) -> str | None:
        query = select(webhook_secrets.c.secret).where(webhook_secrets.c.project == project)
        async with self._db.read() as conn:
            return (await conn.execute(query)).scalar()

    async def add_secret(self, project: str, secret: str, now: datetime) -> str:
        """Stores ``secret`` as the project's unless it has one already; returns the project's secret."""
        try:
            async with self._db.begin() as conn:
                await conn.execute(insert(webhook_secrets).values(project=project, secret=secret, create_time=now))
            return secret
        except IntegrityError:
            existing = await self.secret(project)
            assert existing is not None
            return existing


def _this_attempt(delivery: WebhookDelivery) -> tuple:
    """Matches the row only while it is still pending at the attempt ``delivery`` was read at."""
    c = webhook_deliveries.c
    return (c.project == delivery.project, c.id == delivery.id, c.state == PENDING, c.attempts == delivery.attempts)
