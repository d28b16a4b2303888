"""The model catalogue's rows: models added at run time, each with its ModelConfig as JSON (see models.catalogue)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from localgem.storage.database import Database
from localgem.storage.records import ModelRecord
from localgem.storage.tables import models


class ModelRepository(Protocol):
    async def add(self, record: ModelRecord) -> bool: ...
    async def put(self, record: ModelRecord) -> ModelRecord: ...
    async def get(self, model_id: str) -> ModelRecord | None: ...
    async def all(self) -> list[ModelRecord]: ...
    async def remove(self, model_id: str) -> bool: ...


class SqlModelRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: ModelRecord) -> bool:
        """Stores a new model; False if the id is taken (by an earlier add, or a racing one)."""
        try:
            async with self._db.begin() as conn:
                await conn.execute(insert(models).values(**asdict(record)))
        except IntegrityError:
            return False
        return True

    async def put(self, record: ModelRecord) -> ModelRecord:
        """Stores the model, replacing the one with its id if any (which keeps its create_time)."""
        try:
            return await self._put(record)
        except IntegrityError:  # a racing insert of the same id won: the row exists now, so this updates it
            return await self._put(record)

    async def _put(self, record: ModelRecord) -> ModelRecord:
        change = update(models).where(models.c.id == record.id)
        change = change.values(source=record.source, config=record.config, update_time=record.update_time)
        async with self._db.begin() as conn:
            if (await conn.execute(change)).rowcount == 0:
                await conn.execute(insert(models).values(**asdict(record)))
                return record
            row = (await conn.execute(select(models).where(models.c.id == record.id))).one()
        return ModelRecord(**row._mapping)

    async def get(self, model_id: str) -> ModelRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(models).where(models.c.id == model_id))).first()
        return ModelRecord(**row._mapping) if row else None

    async def all(self) -> list[ModelRecord]:
        """Ordered by id. The catalogue holds at most a few hundred models: read whole on each refresh."""
        async with self._db.read() as conn:
            return [ModelRecord(**row._mapping) for row in await conn.execute(select(models).order_by(models.c.id))]

    async def remove(self, model_id: str) -> bool:
        async with self._db.begin() as conn:
            return (await conn.execute(delete(models).where(models.c.id == model_id))).rowcount == 1
