"""cachedContents: a conversation prefix (contents, system instruction, tools) stored per project
with an expiry, used as the start of later generateContent requests."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from localgem import errors, names
from localgem.caching.wire import CachedContent, CachedContentUsageMetadata, ListCachedContentsResponse
from localgem.models.registry import ModelEntry, ModelRegistry
from localgem.storage.caches import CacheRepository
from localgem.storage.records import CacheRecord
from localgem.types.field_mask import update_paths
from localgem.types.generation import GenerateContentRequest
from localgem.types.paging import paginate
from localgem.types.wire import parse_message, rfc3339

Clock = Callable[[], datetime]
#: Tokens of a request's prompt (contents, system instruction, tools) on a model: the generation service's.
PromptCounter = Callable[[str, ModelEntry, GenerateContentRequest], Awaitable[list[int]]]


class KeptState(Protocol):
    """Where caches' computed KV state lives (the engines'): kept on creation, dropped on deletion."""

    async def keep(self, entry: ModelEntry, cache_id: str, prompt: list[int]) -> None: ...
    async def drop(self, model_id: str, cache_id: str) -> None: ...


UPDATABLE = {"ttl", "expire_time"}


@dataclass(frozen=True)
class CacheLimits:
    default_ttl: timedelta = timedelta(hours=1)
    min_tokens: int = 0


@dataclass(frozen=True)
class CacheUse:
    """A request with its cache's contents in front, and what the cache covers."""

    request: GenerateContentRequest
    cache_id: str
    cached_tokens: int


class CacheService:
    def __init__(
        self,
        repository: CacheRepository,
        registry: ModelRegistry,
        clock: Clock,
        count_prompt: PromptCounter,
        kept_state: KeptState | None = None,
        limits: CacheLimits = CacheLimits(),
    ) -> None:
        self._repo = repository
        self._registry = registry
        self._clock = clock
        self._count_prompt = count_prompt
        self._kept = kept_state
        self._limits = limits

    async def create(self, project: str, body: CachedContent) -> CachedContent:
        if not body.model:
            raise errors.invalid_field("cached_content.model", "* CachedContent.model: model is required.")
        entry = self._registry.resolve(body.model, "createCachedContent")
        if not entry.chats:
            raise errors.InvalidArgument(f"{entry.name} is {entry.kind}: it cannot cache contents.")
        for field in ("name", "create_time", "update_time", "usage_metadata"):
            if getattr(body, field) is not None:
                raise errors.invalid_field(field, f"{field} is output only.")
        now = self._clock()
        expire = self._expiry(body, now) or now + self._limits.default_ttl
        request = GenerateContentRequest(
            contents=body.contents,
            system_instruction=body.system_instruction,
            tools=body.tools,
            tool_config=body.tool_config,
        )
        if not body.contents:
            raise errors.invalid_field("cached_content.contents", "A cache needs contents.")
        prompt = await self._count_prompt(project, entry, request)
        if len(prompt) < self._limits.min_tokens:
            raise errors.InvalidArgument(
                f"Cached content is too small. total_token_count={len(prompt)}, min_total_token_count="
                f"{self._limits.min_tokens}."
            )
        record = CacheRecord(
            project=project,
            id=names.new_id(),
            model=entry.id,
            display_name=body.display_name,
            content=json.dumps(request.to_wire()),
            token_count=len(prompt),
            create_time=now,
            update_time=now,
            expire_time=expire,
        )
        if self._kept is not None:
            await self._kept.keep(entry, record.id, prompt)
        await self._repo.add(record)
        return _resource(record)

    async def get(self, project: str, name: str) -> CachedContent:
        return _resource(await self._record(project, name))

    async def list(self, project: str, page_size: int | None, page_token: str | None) -> ListCachedContentsResponse:
        records = await self._repo.all(project, self._clock())
        page, token = paginate(records, page_size, page_token, default_size=100, max_size=1000)
        return ListCachedContentsResponse(cached_contents=[_resource(r) for r in page] or None, next_page_token=token)

    async def update(self, project: str, name: str, body: CachedContent, update_mask: str | None) -> CachedContent:
        cache_id = names.lookup_id(name, "cachedContents", _not_found)
        refusal = "Only the expiration (ttl or expireTime) of a cached content can be updated."
        update_paths(update_mask, body, UPDATABLE, refusal)
        if not {f for f in body.model_fields_set if getattr(body, f) is not None} <= UPDATABLE | {"name"}:
            raise errors.invalid_field("update_mask", refusal)
        now = self._clock()
        expire = self._expiry(body, now)
        if expire is None:
            raise errors.invalid_field("cached_content.ttl", "Give the new ttl or expireTime.")
        record = await self._repo.expire_at(project, cache_id, expire, now)
        if record is None:
            raise _not_found()
        return _resource(record)

    async def delete(self, project: str, name: str) -> None:
        record = await self._record(project, name)
        if not await self._repo.remove(project, record.id):
            raise _not_found()
        if self._kept is not None:  # a request using it now goes on with the state it restored
            await self._kept.drop(record.model, record.id)

    async def sweep(self) -> int:
        """Deletes expired caches (and their kept state); how many."""
        expired = await self._repo.expired(self._clock(), 500)
        for record in expired:
            await self._repo.remove(record.project, record.id)
            if self._kept is not None:
                await self._kept.drop(record.model, record.id)
        return len(expired)

    async def apply(self, project: str, model: str, body: GenerateContentRequest, prefix: str = "") -> CacheUse:
        """The request with the cache's contents in front; the request may not set what the cache fixes."""
        assert body.cached_content
        entry = self._registry.resolve(model, "generateContent")
        record = await self._record(project, body.cached_content)
        for field in ("system_instruction", "tools", "tool_config"):
            if getattr(body, field) is not None:
                raise errors.invalid_field(
                    f"{prefix}{field}",
                    "CachedContent can not be used with GenerateContent request setting system_instruction, "
                    "tools or tool_config.\n\nProposed fix: move those values to CachedContent from "
                    "GenerateContent request.",
                )
        if record.model != entry.id:
            raise errors.invalid_field(
                f"{prefix}model",
                f"Model used by GenerateContent request (models/{entry.id}) and CachedContent "
                f"(models/{record.model}) has to be the same.",
            )
        cached = parse_message(GenerateContentRequest, json.loads(record.content))
        merged = body.model_copy(
            update={
                "cached_content": None,
                "contents": (cached.contents or []) + (body.contents or []),
                "system_instruction": cached.system_instruction,
                "tools": cached.tools,
                "tool_config": cached.tool_config,
            }
        )
        return CacheUse(merged, record.id, record.token_count)

    async def _record(self, project: str, name: str) -> CacheRecord:
        cache_id = names.lookup_id(name, "cachedContents", _not_found)
        record = await self._repo.get(project, cache_id, self._clock())
        if record is None:
            raise _not_found()
        return record

    def _expiry(self, body: CachedContent, now: datetime) -> datetime | None:
        if body.ttl is not None and body.expire_time is not None:
            raise errors.invalid_field("cached_content.expiration", "Set either ttl or expireTime, not both.")
        if body.ttl is not None:
            seconds = float(body.ttl.removesuffix("s"))
            if seconds <= 0:
                raise errors.invalid_field("cached_content.ttl", f"ttl must be positive; got {body.ttl}.")
            try:
                return now + timedelta(seconds=seconds)
            except OverflowError:
                raise errors.invalid_field("cached_content.ttl", f"ttl {body.ttl[:40]} is too long.") from None
        if body.expire_time is not None:
            expire = datetime.fromisoformat(body.expire_time.replace("z", "Z"))
            if expire.tzinfo is None:
                raise errors.invalid_field("cached_content.expire_time", "expireTime needs a time zone (Z).")
            if expire <= now:
                raise errors.invalid_field("cached_content.expire_time", "expireTime must be in the future.")
            return expire
        return None


def _resource(record: CacheRecord) -> CachedContent:
    return CachedContent(
        name=f"cachedContents/{record.id}",
        model=f"models/{record.model}",
        display_name=record.display_name,
        create_time=rfc3339(record.create_time),
        update_time=rfc3339(record.update_time),
        expire_time=rfc3339(record.expire_time),
        usage_metadata=CachedContentUsageMetadata(total_token_count=record.token_count),
    )


def _not_found(_cache_id: str = "") -> errors.PermissionDenied:
    """Google's answer for a cache that does not exist, has expired, or belongs to another project
    (its message names no id)."""
    return errors.PermissionDenied("CachedContent not found (or permission denied)")
