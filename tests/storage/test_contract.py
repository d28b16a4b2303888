"""One contract for the repositories, run over SQLite and over a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from localgem.storage.batches import SqlBatchRepository
from localgem.storage.caches import SqlCacheRepository
from localgem.storage.corpora import Exists, SqlCorpusRepository
from localgem.storage.database import Database
from localgem.storage.file_search import SqlFileSearchRepository
from localgem.storage.files import FileExists, SqlFileRepository
from localgem.storage.generated_files import SqlGeneratedFileRepository
from localgem.storage.keys import SqlKeyRepository
from localgem.storage.live import SqlAuthTokenRepository, SqlLiveStateRepository
from localgem.storage.models import SqlModelRepository
from localgem.storage.quotas import Charge, Seat, SqlQuotaRepository
from localgem.storage.records import (
    AuthTokenRecord,
    BatchCounts,
    BatchItem,
    BatchRecord,
    CacheRecord,
    ChunkRecord,
    CorpusDocumentRecord,
    CorpusRecord,
    DocumentCounts,
    DocumentRecord,
    FileRecord,
    FileSearchStoreRecord,
    GeneratedFileRecord,
    KeyRecord,
    LiveStateRecord,
    ModelRecord,
    PageCursor,
    PermissionRecord,
    TunedModelRecord,
    UploadRecord,
    WebhookDelivery,
)
from localgem.storage.tables import metadata
from localgem.storage.tuned_models import Exists as TunedExists
from localgem.storage.tuned_models import SqlTunedModelRepository
from localgem.storage.uploads import SqlUploadRepository
from localgem.storage.webhooks import SqlWebhookRepository

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate()
    yield database
    await database.close()


def a_file(file_id: str, project: str = "p1", sha: str = "a" * 64, at: datetime = T0, **changes) -> FileRecord:
    record = FileRecord(
        project=project,
        id=file_id,
        display_name="notes",
        mime_type="text/plain",
        size_bytes=10,
        sha256=sha,
        state="ACTIVE",
        source="UPLOADED",
        create_time=at,
        update_time=at,
        expire_time=at + timedelta(hours=48),
    )
    return replace(record, **changes)


class Bytes:
    """Stands in for the blob store: which contents are stored."""

    def __init__(self) -> None:
        self.stored: set[str] = set()

    def storer(self, sha: str):
        async def store() -> None:
            self.stored.add(sha)

        return store

    async def drop(self, sha: str) -> None:
        self.stored.discard(sha)


async def test_migrations_build_exactly_the_declared_schema_and_run_twice(db: Database) -> None:
    await db.migrate()  # already at head: a no-op
    async with db.read() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert diff == []
    assert {"files", "uploads", "blobs", "api_keys", "alembic_version"} <= tables


async def test_a_file_round_trips_with_exact_times(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    record = a_file("abc123")
    await files.add(record, blobs.storer(record.sha256))
    assert await files.get("p1", "abc123", T0) == record
    assert record.sha256 in blobs.stored


async def test_projects_never_see_each_others_files(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    await files.add(a_file("shared-name", "p1"), blobs.storer("a" * 64))
    await files.add(a_file("shared-name", "p2", sha="b" * 64), blobs.storer("b" * 64))
    await files.add(a_file("only-p1", "p1"), blobs.storer("a" * 64))
    assert (await files.get("p2", "shared-name", T0)).sha256 == "b" * 64
    assert await files.get("p2", "only-p1", T0) is None
    assert {r.id for r in await files.page("p2", T0, 100, None)} == {"shared-name"}
    assert await files.remove("p2", "only-p1", blobs.drop) is None
    assert await files.get("p1", "only-p1", T0) is not None


async def test_expired_files_are_invisible_and_listed_for_the_sweeper(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    await files.add(a_file("old", at=T0 - timedelta(hours=49)), blobs.storer("a" * 64))
    await files.add(a_file("new"), blobs.storer("a" * 64))
    assert await files.get("p1", "old", T0) is None
    assert [r.id for r in await files.page("p1", T0, 10, None)] == ["new"]
    assert [r.id for r in await files.expired(T0, 10)] == ["old"]
    assert await files.usage("p1", T0) == 10


async def test_pages_are_newest_first_and_a_cursor_resumes_exactly(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    for i in range(25):  # pairs share a create_time: the id breaks the tie
        await files.add(a_file(f"f{i:02d}", at=T0 + timedelta(seconds=i // 2)), blobs.storer("a" * 64))
    seen: list[str] = []
    cursor = None
    while True:
        page = await files.page("p1", T0, 10, cursor)
        seen += [r.id for r in page]
        if len(page) < 10:
            break
        cursor = PageCursor(page[-1].create_time, page[-1].id)
    assert len(seen) == 25 and len(set(seen)) == 25
    assert seen[0] == "f24" and seen[-1] == "f00"


async def test_an_id_is_unique_within_a_project(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    await files.add(a_file("dup"), blobs.storer("a" * 64))
    with pytest.raises(FileExists):
        await files.add(a_file("dup", sha="c" * 64), blobs.storer("c" * 64))


async def test_concurrent_adds_of_one_id_let_exactly_one_win(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    results = await asyncio.gather(
        *(files.add(a_file("race", sha=f"{i:x}" * 64), blobs.storer(f"{i:x}" * 64)) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, FileExists) for r in results if r is not None)


async def test_failed_byte_storage_leaves_no_record(db: Database) -> None:
    files = SqlFileRepository(db)

    async def disk_full() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        await files.add(a_file("nobytes"), disk_full)
    assert await files.get("p1", "nobytes", T0) is None
    assert not await files.blob_known("a" * 64)


async def test_bytes_are_dropped_only_with_their_last_file(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    await files.add(a_file("one"), blobs.storer("a" * 64))
    await files.add(a_file("two"), blobs.storer("a" * 64))
    await files.remove("p1", "one", blobs.drop)
    assert "a" * 64 in blobs.stored and await files.blob_known("a" * 64)
    await files.remove("p1", "two", blobs.drop)
    assert "a" * 64 not in blobs.stored and not await files.blob_known("a" * 64)


async def test_racing_delete_and_add_of_one_content_never_lose_the_bytes(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    sha = "d" * 64
    await files.add(a_file("seed", sha=sha), blobs.storer(sha))
    for round_ in range(15):
        newcomer = f"new{round_}"
        victim = "seed" if round_ == 0 else f"new{round_ - 1}"
        await asyncio.gather(
            files.add(a_file(newcomer, sha=sha), blobs.storer(sha)), files.remove("p1", victim, blobs.drop)
        )
        assert await files.get("p1", newcomer, T0) is not None
        assert sha in blobs.stored, f"round {round_}: a file's bytes were dropped"


async def test_processing_finishes_once(db: Database) -> None:
    files, blobs = SqlFileRepository(db), Bytes()
    pdf = a_file("doc", mime_type="application/pdf", state="PROCESSING")
    await files.add(pdf, blobs.storer(pdf.sha256))
    assert [r.id for r in await files.processing()] == ["doc"]
    text_sha = "e" * 64
    later = T0 + timedelta(seconds=3)
    await files.finish_processing(
        pdf, "ACTIVE", later, text_sha256=text_sha, error=None, text_size=4, store_text=blobs.storer(text_sha)
    )
    done = await files.get("p1", "doc", T0)
    assert (done.state, done.text_sha256, done.update_time) == ("ACTIVE", text_sha, later)
    await files.finish_processing(pdf, "FAILED", later, text_sha256=None, error="late")  # no longer PROCESSING
    assert (await files.get("p1", "doc", T0)).state == "ACTIVE"
    await files.remove("p1", "doc", blobs.drop)
    assert blobs.stored == set()


def an_upload(upload_id: str, project: str = "p1", **changes) -> UploadRecord:
    record = UploadRecord(
        id=upload_id,
        token_digest=upload_id.ljust(64, "0"),
        project=project,
        file_id="target",
        display_name=None,
        mime_type="text/plain",
        declared_size=100,
        received=0,
        create_time=T0,
        expire_time=T0 + timedelta(days=7),
    )
    return replace(record, **changes)


async def test_upload_sessions_acknowledge_by_compare_and_set(db: Database) -> None:
    uploads = SqlUploadRepository(db)
    await uploads.add(an_upload("upload0000001"))
    assert (await uploads.by_token("upload0000001".ljust(64, "0"), T0)).received == 0
    assert await uploads.advance("upload0000001", 0, 40)
    assert not await uploads.advance("upload0000001", 0, 80)  # a stale writer loses
    assert (await uploads.by_token("upload0000001".ljust(64, "0"), T0)).received == 40
    assert await uploads.pending_for("p1", "target", T0)
    assert not await uploads.pending_for("p2", "target", T0)
    assert await uploads.pending_bytes("p1", T0) == 100


async def test_finalizing_commits_the_file_and_closes_the_session_together(db: Database) -> None:
    uploads, files, blobs = SqlUploadRepository(db), SqlFileRepository(db), Bytes()
    await uploads.add(an_upload("upload0000002", received=10))
    await files.add(a_file("target"), blobs.storer("a" * 64), finalizes_upload="upload0000002")
    session = await uploads.by_token("upload0000002".ljust(64, "0"), T0)
    assert session.finalized
    assert not await uploads.advance("upload0000002", 10, 20)
    assert await uploads.pending_bytes("p1", T0) == 0


async def test_expired_sessions_are_found_and_removed(db: Database) -> None:
    uploads = SqlUploadRepository(db)
    await uploads.add(an_upload("upload0000003", expire_time=T0 - timedelta(seconds=1)))
    await uploads.add(an_upload("upload0000004"))
    assert await uploads.by_token("upload0000003".ljust(64, "0"), T0) is None
    assert [u.id for u in await uploads.expired(T0, 10)] == ["upload0000003"]
    await uploads.remove("upload0000003")
    assert await uploads.ids() == {"upload0000004"}


async def test_keys_map_to_projects(db: Database) -> None:
    keys = SqlKeyRepository(db)
    await keys.add(KeyRecord("1" * 64, "alpha", "lg-abcdefg", T0))
    await keys.add(KeyRecord("2" * 64, "beta", "lg-hijklmn", T0))
    assert await keys.project_of("1" * 64) == "alpha"
    assert await keys.project_of("3" * 64) is None
    assert [k.project for k in await keys.all()] == ["alpha", "beta"]
    assert await keys.remove("lg-abcdefg") == 1
    assert await keys.project_of("1" * 64) is None


async def test_readiness_sees_whether_the_database_answers(db: Database) -> None:
    assert await db.reachable()
    nowhere = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        assert not await nowhere.reachable(timeout=5)
    finally:
        await nowhere.close()


def a_batch(batch_id: str, project: str = "p1", at: datetime = T0, **changes) -> BatchRecord:
    record = BatchRecord(
        project=project,
        id=batch_id,
        kind="embed",
        model="models/all-minilm-l6-v2",
        display_name="b",
        state="BATCH_STATE_PENDING",
        priority=0,
        request_count=3,
        create_time=at,
        update_time=at,
    )
    return replace(record, **changes)


async def in_groups(items: list[BatchItem], size: int = 2) -> AsyncIterator[list[BatchItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def test_batches_are_claimed_once_and_results_recorded_once(db: Database) -> None:
    repo = SqlBatchRepository(db)
    items = [BatchItem(position=i, request=f'{{"n": {i}}}', metadata='{"key": "k"}') for i in range(3)]
    added = await repo.add(a_batch("b1", request_count=0), in_groups(items))
    assert added.request_count == 3 and await repo.get("p1", "b1") == added
    await repo.add(a_batch("b2", project="p2", at=T0 + timedelta(seconds=1), priority=5), in_groups(items))
    assert await repo.get("p2", "b1") is None  # tenancy

    # Concurrent claims: each batch goes to exactly one owner, higher priority first.
    lease = T0 + timedelta(seconds=30)
    claimed = await asyncio.gather(*(repo.claim(f"owner{i}", T0, lease) for i in range(6)))
    taken = [c for c in claimed if c is not None]
    assert sorted(c.id for c in taken) == ["b1", "b2"] and taken[0].state == "BATCH_STATE_RUNNING"
    owners = {c.id: c.lease_owner for c in taken}
    assert await repo.claim("late", T0 + timedelta(seconds=1), lease) is None  # leases hold

    b1 = await repo.get("p1", "b1")
    assert [i.position for i in await repo.pending("p1", "b1", 2)] == [0, 1]
    first = [replace(items[0], response='{"r": 0}'), replace(items[1], error='{"code": 3}')]
    assert not await repo.record("intruder", b1, first, T0, lease)  # only the lease holder writes
    assert await repo.counts("p1", "b1") == BatchCounts(0, 0, 3)
    assert await repo.record(owners["b1"], b1, first, T0, lease)
    again = [replace(items[0], response='{"r": "twice"}')]
    assert await repo.record(owners["b1"], b1, again, T0, lease)  # a done request is never rewritten
    assert (await repo.items("p1", "b1"))[0].response == '{"r": 0}'
    assert [i.position for i in await repo.items("p1", "b1", after=0, limit=1)] == [1]  # paging
    assert await repo.counts("p1", "b1") == BatchCounts(1, 1, 1)
    assert [i.position for i in await repo.pending("p1", "b1", 10)] == [2]

    # A lapsed lease passes to another server, and the old holder can no longer write or finish.
    later = lease + timedelta(seconds=1)
    taken_over = await repo.claim("rescuer", later, later + timedelta(seconds=30))
    assert taken_over is not None and taken_over.id == "b2"  # both lapsed: the higher priority first
    rescued = await repo.claim("rescuer", later, later + timedelta(seconds=30))
    assert rescued is not None and rescued.id == "b1" and rescued.lease_owner == "rescuer"
    assert not await repo.record(owners["b1"], b1, [replace(items[2], response="{}")], later, later)
    assert not await repo.finish(owners["b1"], b1, "BATCH_STATE_SUCCEEDED", later)
    assert await repo.finish("rescuer", taken_over, "BATCH_STATE_SUCCEEDED", later)
    done = await repo.get(taken_over.project, taken_over.id)
    assert done.state == "BATCH_STATE_SUCCEEDED" and done.end_time == later and done.lease_owner is None


async def test_cached_contents_belong_to_a_project_and_expire(db: Database) -> None:
    repo = SqlCacheRepository(db)

    def a_cache(cache_id: str, project: str = "p1", ttl: int = 60) -> CacheRecord:
        return CacheRecord(project, cache_id, "m", None, "{}", 10, T0, T0, T0 + timedelta(seconds=ttl))

    await repo.add(a_cache("c1"))
    await repo.add(a_cache("c2", ttl=10))
    await repo.add(a_cache("c3", project="p2"))
    assert await repo.get("p2", "c1", T0) is None
    assert [c.id for c in await repo.all("p1", T0 + timedelta(seconds=20))] == ["c1"]  # c2 has expired
    assert await repo.get("p1", "c2", T0 + timedelta(seconds=10)) is None
    later = T0 + timedelta(seconds=30)
    longer = await repo.expire_at("p1", "c1", T0 + timedelta(hours=1), later)
    assert longer.expire_time == T0 + timedelta(hours=1) and longer.update_time == later
    assert await repo.expire_at("p1", "c2", T0 + timedelta(hours=1), later) is None  # expired: not revived
    assert [c.id for c in await repo.expired(later, 10)] == ["c2"]
    assert await repo.remove("p1", "c2") and not await repo.remove("p1", "c2")
    assert not await repo.remove("p2", "c1")


async def test_batches_cancel_expire_rename_and_remove(db: Database) -> None:
    repo = SqlBatchRepository(db)
    items = [BatchItem(position=0, request="{}")]
    for batch_id, at in (("old", T0), ("new", T0 + timedelta(hours=47)), ("done", T0)):
        await repo.add(a_batch(batch_id, at=at), in_groups(items))
    assert await repo.cancel("p1", "done", T0) and not await repo.cancel("p1", "done", T0)  # final stays final
    now = T0 + timedelta(hours=48, seconds=1)
    assert await repo.expire(now - timedelta(hours=48), now) == 1
    states = {b.id: b.state for b in await repo.all("p1")}
    assert states == {"old": "BATCH_STATE_EXPIRED", "new": "BATCH_STATE_PENDING", "done": "BATCH_STATE_CANCELLED"}
    assert await repo.claim("owner", now, now + timedelta(seconds=30)) == replace(
        await repo.get("p1", "new"),
        state="BATCH_STATE_RUNNING",
        lease_owner="owner",
        lease_until=now + timedelta(seconds=30),
        update_time=now,
    )
    assert await repo.set_responses_file("p1", "new", "f1") and not await repo.set_responses_file("p1", "new", "f2")
    assert (await repo.get("p1", "new")).responses_file == "f1"  # named once, by whoever came first
    assert await repo.rename("p1", "new", {"display_name": "x", "priority": 3}, now)
    assert (await repo.get("p1", "new")).priority == 3
    assert await repo.remove("p1", "old") and await repo.get("p1", "old") is None and not await repo.items("p1", "old")
    assert not await repo.remove("p2", "new")


def a_delivery(delivery_id: str, url: str, batch_id: str = "hooked", at: datetime = T0) -> WebhookDelivery:
    return WebhookDelivery("p1", delivery_id, batch_id, url, '{"type": "batch.succeeded"}', "PENDING", 0, at, at, at)


async def test_webhooks_are_queued_once_and_each_attempt_is_claimed_once(db: Database) -> None:
    batches, hooks = SqlBatchRepository(db), SqlWebhookRepository(db)
    config = '{"uris": ["http://a.example/hook", "http://b.example/hook"]}'
    items = [BatchItem(position=0, request="{}")]
    await repo_add(batches, a_batch("hooked", webhook_config=config, webhook_state="PENDING"), items)
    await repo_add(batches, a_batch("plain"), items)
    assert (await batches.get("p1", "hooked")).webhook_config == config
    assert await batches.awaiting_webhooks(10) == []  # not final yet
    assert await batches.cancel("p1", "hooked", T0) and await batches.cancel("p1", "plain", T0)
    [finished] = await batches.awaiting_webhooks(10)
    assert finished.id == "hooked" and finished.state == "BATCH_STATE_CANCELLED"

    # Queued together with the batch's mark, once, however many servers try at the same time.
    deliveries = [a_delivery("msg_a", "http://a.example/hook"), a_delivery("msg_b", "http://b.example/hook")]
    queued = await asyncio.gather(*(hooks.queue(finished, deliveries) for _ in range(4)))
    assert sorted(queued) == [False, False, False, True]
    assert await batches.awaiting_webhooks(10) == [] and (await batches.get("p1", "hooked")).webhook_state == "QUEUED"
    assert [d.id for d in await hooks.for_batch("p1", "hooked")] == ["msg_a", "msg_b"]
    assert await hooks.next_due() == T0 and await hooks.due(T0 - timedelta(seconds=1), 10) == []

    # An attempt is claimed by one server only, and is not due again while it may be running.
    due = {d.id: d for d in await hooks.due(T0, 10)}
    assert set(due) == {"msg_a", "msg_b"}
    now, until = T0 + timedelta(seconds=1), T0 + timedelta(seconds=31)
    claims = await asyncio.gather(*(hooks.claim(due["msg_a"], now, until) for _ in range(4)))
    [mine] = [c for c in claims if c is not None]
    assert mine.attempts == 1 and mine.next_attempt == until
    assert [d.id for d in await hooks.due(now, 10)] == ["msg_b"]

    # A failed attempt is due again at its retry time; a stale claim settles nothing.
    retry = now + timedelta(seconds=5)
    await hooks.failed(mine, "HTTP 503", now, retry)
    assert [d.id for d in await hooks.due(retry - timedelta(seconds=1), 10)] == ["msg_b"]
    [a] = [d for d in await hooks.due(retry, 10) if d.id == "msg_a"]
    again = await hooks.claim(a, retry, retry + timedelta(seconds=30))
    assert again.id == "msg_a" and again.attempts == 2 and again.last_error == "HTTP 503"
    await hooks.delivered(mine, retry)  # the first attempt's late answer: not this claim's outcome
    assert (await hooks.get("p1", "msg_a")).state == "PENDING"
    await hooks.delivered(again, retry)
    assert (await hooks.get("p1", "msg_a")).state == "DELIVERED"
    b = await hooks.claim(due["msg_b"], retry, retry + timedelta(seconds=30))
    await hooks.failed(b, "ConnectionRefusedError", retry, None)  # given up
    assert (await hooks.get("p1", "msg_b")).state == "FAILED" and await hooks.next_due() is None
    assert await hooks.prune(retry) == 0 and await hooks.prune(retry + timedelta(seconds=1)) == 2
    assert await hooks.for_batch("p1", "hooked") == []

    # One signing secret per project, whoever makes it first.
    made = await asyncio.gather(*(hooks.add_secret("p1", f"whsec_{i}", T0) for i in range(4)))
    assert len(set(made)) == 1 and await hooks.secret("p1") == made[0] and await hooks.secret("p2") is None


async def repo_add(repo: SqlBatchRepository, record: BatchRecord, items: list[BatchItem]) -> BatchRecord:
    return await repo.add(record, in_groups(items))


async def test_catalogue_models_are_added_once_replaced_in_place_and_removed(db: Database) -> None:
    repo = SqlModelRepository(db)
    first = ModelRecord("tuned-1", "tuned", '{"id": "tuned-1", "path": "/w/a.gguf"}', T0, T0)
    assert await repo.add(first)
    assert not await repo.add(replace(first, source="cli", config="{}"))  # the id is taken
    assert await repo.get("tuned-1") == first and await repo.get("nope") is None

    later = T0 + timedelta(seconds=5)
    changed = ModelRecord("tuned-1", "package", '{"id": "tuned-1", "package": "p"}', later, later)
    assert await repo.put(changed) == replace(changed, create_time=T0)  # replaced, created when it was
    fresh = ModelRecord("a-model", "cli", '{"id": "a-model", "path": "/w/b.gguf"}', later, later)
    assert await repo.put(fresh) == fresh
    assert await repo.all() == [fresh, replace(changed, create_time=T0)]  # by id

    # Servers adding one id at the same time: exactly one adds it; putting it at the same time never fails.
    added = await asyncio.gather(*(repo.add(replace(first, id="race", config=str(i))) for i in range(6)))
    assert sorted(added) == [False] * 5 + [True]
    await asyncio.gather(*(repo.put(replace(first, id="racy", config=str(i))) for i in range(6)))
    assert [r.id for r in await repo.all()] == ["a-model", "race", "racy", "tuned-1"]

    assert await repo.remove("tuned-1") and not await repo.remove("tuned-1")
    assert await repo.get("tuned-1") is None


async def test_live_state_keeps_only_a_sessions_latest_handle_and_expires(db: Database) -> None:
    states = SqlLiveStateRepository(db)
    first = LiveStateRecord("h1", "p1", "s1", '{"turn": 1}', T0, T0 + timedelta(hours=2))
    await states.save(first)
    await states.save(LiveStateRecord("x1", "p1", "s2", "{}", T0, T0 + timedelta(hours=1)))
    latest = replace(first, handle_digest="h2", state='{"turn": 2}')
    await states.save(latest)
    assert await states.get("h1") is None and await states.get("h2") == latest
    assert await states.sweep(T0 + timedelta(hours=1)) == 1  # only the other session's handle is due
    assert await states.get("x1") is None and await states.get("h2") == latest


async def test_token_uses_are_spent_exactly_once_each_under_contention(db: Database) -> None:
    tokens = SqlAuthTokenRepository(db)
    limited = AuthTokenRecord("t1", "p1", 3, T0 + timedelta(minutes=30), T0 + timedelta(minutes=1), None, None, T0)
    await tokens.add(limited)
    await tokens.add(replace(limited, digest="t2", uses_left=None, setup='{"model": "m"}', field_mask="model"))
    spent = await asyncio.gather(*(tokens.take_use("t1") for _ in range(10)))
    assert sum(spent) == 3
    assert all([await tokens.take_use("t2") for _ in range(5)])  # unlimited
    assert not await tokens.take_use("nope")
    assert (await tokens.get("t1")).uses_left == 0 and (await tokens.get("t2")).field_mask == "model"
    assert await tokens.sweep(T0 + timedelta(minutes=30)) == 2 and await tokens.get("t2") is None


def a_store(store_id: str, project: str = "p1") -> FileSearchStoreRecord:
    return FileSearchStoreRecord(project, store_id, "docs", "models/all-minilm-l6-v2", T0, T0)


def a_document(document_id: str, store_id: str = "s1", project: str = "p1", sha: str | None = "d" * 64, **changes):
    record = DocumentRecord(
        project=project,
        store_id=store_id,
        id=document_id,
        display_name="doc",
        custom_metadata=None,
        mime_type="text/plain",
        size_bytes=100,
        sha256=sha,
        state="STATE_PENDING",
        origin="upload",
        chunking='{"max_tokens": 200, "overlap_tokens": 20}',
        create_time=T0,
        update_time=T0,
    )
    return replace(record, **changes)


async def test_documents_are_ingested_under_a_lease_and_counted_by_state(db: Database) -> None:
    repo = SqlFileSearchRepository(db)
    await repo.add_store(a_store("s1"))
    await repo.add_store(a_store("s1", project="p2"))

    async def nothing() -> None:
        pass

    for n in range(3):
        await repo.add_document(a_document(f"d{n}", create_time=T0 + timedelta(seconds=n)), nothing)
    until = T0 + timedelta(seconds=30)
    claims = await asyncio.gather(*(repo.claim(owner, T0, until, ["ingest"]) for owner in ("a", "b", "c", "d")))
    taken = [c for c in claims if c is not None]
    assert sorted(c.id for c in taken) == ["d0", "d1", "d2"]  # each claimed once
    assert await repo.claim("e", T0, until, ["ingest"]) is None  # all leased
    assert await repo.claim("e", T0, until, ["generate"]) is None  # another kind
    first, second, third = sorted(taken, key=lambda c: c.id)
    assert not await repo.note("intruder", first, chunk_count=5)
    assert await repo.note(first.lease_owner, first, chunk_count=5)
    assert await repo.finish(first.lease_owner, first, "STATE_ACTIVE", T0)
    assert not await repo.finish(first.lease_owner, first, "STATE_FAILED", T0)  # once
    assert await repo.note(second.lease_owner, second, error="unreadable")
    assert await repo.finish(second.lease_owner, second, "STATE_FAILED", T0)
    counts = await repo.counts("p1", ["s1"])
    assert counts["s1"] == DocumentCounts(active=1, pending=1, failed=1, size_bytes=300)
    assert (await repo.counts("p2", ["s1"]))["s1"] == DocumentCounts()
    assert set(await repo.active("p1", {("s1", "d0"), ("s1", "d1"), ("s1", "d2")})) == {("s1", "d0")}
    assert await repo.active("p2", {("s1", "d0")}) == {}
    lapsed = await repo.claim("f", until + timedelta(seconds=1), until + timedelta(seconds=60), ["ingest"])
    assert lapsed is not None and lapsed.id == third.id  # its holder went quiet: another takes it over
    assert not await repo.renew(third.lease_owner, third, T0, until)
    assert await repo.expire(T0 + timedelta(seconds=10), T0) == 1
    assert (await repo.document("p1", "s1", "d2")).state == "STATE_FAILED"


async def test_document_bytes_live_while_a_file_or_a_document_uses_them(db: Database) -> None:
    files_repo, repo = SqlFileRepository(db), SqlFileSearchRepository(db)
    dropped: list[str] = []

    async def drop(sha: str) -> None:
        dropped.append(sha)

    async def nothing() -> None:
        pass

    shared = "e" * 64
    await files_repo.add(a_file("f1", sha=shared), nothing)
    await repo.add_store(a_store("s1"))
    await repo.add_document(a_document("d1", sha=shared), nothing)
    await repo.add_document(a_document("d2", sha="f" * 64), nothing)
    await files_repo.remove("p1", "f1", drop)
    assert dropped == []  # the document still uses the file's bytes
    assert await repo.remove_document("p1", "s1", "d1", drop)
    assert dropped == [shared]
    assert await repo.remove_store("p1", "s1", drop) == ["d2"]
    assert dropped == [shared, "f" * 64]
    assert await repo.store("p1", "s1") is None and await repo.documents("p1", "s1") == []


async def test_corpora_keep_documents_chunks_and_permissions_together(db: Database) -> None:
    repo = SqlCorpusRepository(db)
    await repo.add_corpus(CorpusRecord("c1", "p1", "facts", T0, T0))
    with pytest.raises(Exists):
        await repo.add_corpus(CorpusRecord("c1", "p2", "taken", T0, T0))  # corpus names are global
    for n in range(2):
        await repo.add_document(CorpusDocumentRecord("c1", f"d{n}", None, None, T0, T0))
    chunks = [ChunkRecord("c1", "d0", f"k{n}", f"text {n}", None, "STATE_ACTIVE", T0, T0) for n in range(3)]
    await repo.add_chunks(chunks)
    with pytest.raises(Exists):
        await repo.add_chunks(chunks[:1])
    assert (await repo.count_documents("c1"), await repo.count_chunks("c1"), await repo.count_chunks("c1", "d1")) == (
        2,
        3,
        0,
    )
    await repo.replace_chunks([replace(chunks[0], data="changed", update_time=T0 + timedelta(seconds=1))])
    assert (await repo.chunk("c1", "d0", "k0")).data == "changed"
    assert {c.id for c in await repo.chunks_named("c1", [("d0", "k1"), ("d1", "k1")])} == {"k1"}
    await repo.add_permission(PermissionRecord("c1", "r1", "USER", "p2@x", "p2", "READER", T0))
    await repo.add_permission(PermissionRecord("c1", "r2", "EVERYONE", None, None, "READER", T0))
    assert sorted(await repo.roles("c1", "p2")) == ["READER", "READER"] and await repo.roles("c1", "p3") == ["READER"]
    await repo.set_role("c1", "r1", "WRITER")
    assert sorted(await repo.roles("c1", "p2")) == ["READER", "WRITER"]
    await repo.remove_chunks("c1", [("d0", "k1")])
    await repo.remove_document("c1", "d0")
    assert await repo.count_chunks("c1") == 0 and await repo.count_documents("c1") == 1
    await repo.remove_corpus("c1")
    assert await repo.corpus("c1") is None and await repo.permissions("c1") == [] and await repo.documents("c1") == []


def a_tuned_model(model_id: str, project: str = "p1", **changes) -> TunedModelRecord:
    record = TunedModelRecord(
        id=model_id,
        project=project,
        display_name="Tuned",
        description=None,
        base_model="models/smollm2-135m-instruct",
        source_model=None,
        defaults='{"temperature": 0.7, "top_p": 0.95, "top_k": 40}',
        hyperparameters='{"epoch_count": 1, "batch_size": 4, "learning_rate": 0.001}',
        examples='[["q", "a"]]',
        state="CREATING",
        operation_id=f"op{model_id}",
        total_steps=3,
        create_time=T0,
        update_time=T0,
    )
    return replace(record, **changes)


async def test_tuned_models_lease_progress_adapter_sharing_and_removal(db: Database) -> None:
    repo = SqlTunedModelRepository(db)
    stored = Bytes()
    await repo.add(a_tuned_model("m1"))
    await repo.add(a_tuned_model("m2", project="p2", create_time=T0 + timedelta(seconds=1)))
    with pytest.raises(TunedExists):
        await repo.add(a_tuned_model("m1", project="p3"))  # tuned model names are global
    later = T0 + timedelta(minutes=1)
    claimed = await repo.claim("server-a", T0, later, ["tune"])
    assert claimed is not None and claimed.id == "m1" and claimed.kind == "tune"
    assert await repo.claim("server-b", T0, later, ["generate"]) is None
    assert (await repo.claim("server-b", T0, later, ["tune"])).id == "m2"
    assert await repo.claim("server-c", T0, later, ["tune"]) is None  # both held
    assert await repo.renew("server-a", claimed, T0, later, [{"snapshots": '[{"step": 1}]'}])
    assert not await repo.renew("server-b", claimed, T0, later)  # not its lease
    assert (await repo.get("m1")).snapshots == '[{"step": 1}]'
    assert await repo.note("server-a", claimed, start_time=T0)
    assert not await repo.attach("server-b", claimed, "c" * 64, 100, T0, stored.storer("c" * 64))  # not its lease
    assert "c" * 64 not in stored.stored
    assert await repo.attach("server-a", claimed, "c" * 64, 100, T0, stored.storer("c" * 64))
    assert "c" * 64 in stored.stored
    assert await repo.finish("server-a", claimed, "ACTIVE", later)
    done = await repo.get("m1")
    assert (done.state, done.adapter, done.complete_time, done.lease_owner) == ("ACTIVE", "c" * 64, later, None)
    assert not await repo.cancel("p1", "opm1", later)  # ended already
    assert await repo.cancel("p2", "opm2", later)
    assert (await repo.get("m2")).state == "FAILED" and not await repo.note("server-b", claimed, error="late")
    # Sharing: p3 sees m1 once it is granted, and readers() names who may read.
    assert [r.id for r in await repo.visible("p3")] == []
    await repo.add_permission(PermissionRecord("m1", "g1", "USER", "p3@x", "p3", "READER", T0))
    await repo.add_permission(PermissionRecord("m2", "g2", "EVERYONE", None, None, "READER", T0))
    assert [r.id for r in await repo.visible("p3")] == ["m1", "m2"]
    assert await repo.readers() == {"m1": ["p3"], "m2": ["*"]}
    await repo.transfer("m1", "p3", later)  # p3 owns it now; its own grant goes
    assert (await repo.get("m1")).project == "p3" and await repo.permissions("m1") == []
    assert await repo.remove("m1", stored.drop)
    assert await repo.get("m1") is None and "c" * 64 not in stored.stored
    assert await repo.expire(T0 + timedelta(days=3), later) == 0  # none left CREATING


def a_video_job(file_id: str, project: str = "p1", at: datetime = T0, **changes) -> GeneratedFileRecord:
    record = GeneratedFileRecord(
        project=project,
        id=file_id,
        operation_id=f"op{file_id}",
        model="models/veo-3.0-generate-001",
        model_id="t2v",
        request='{"prompt": "waves"}',
        mime_type="video/mp4",
        state="GENERATING",
        create_time=at,
        update_time=at,
        expire_time=at + timedelta(days=2),
    )
    return replace(record, **changes)


async def test_video_jobs_run_under_a_lease_and_end_once(db: Database) -> None:
    repo = SqlGeneratedFileRepository(db)
    await repo.add(a_video_job("v1"))
    await repo.add(a_video_job("v2", project="p2", at=T0 + timedelta(seconds=1)))
    await repo.add(a_video_job("v1", project="p2", at=T0 + timedelta(seconds=2), operation_id="opother"))
    later = T0 + timedelta(minutes=1)
    claimed = await repo.claim("server-a", T0, later, ["video"])
    assert claimed is not None and (claimed.project, claimed.id, claimed.kind) == ("p1", "v1", "video")
    assert await repo.claim("server-b", T0, later, ["tune"]) is None
    assert (await repo.claim("server-b", T0, later, ["video"])).project == "p2"
    assert await repo.renew("server-a", claimed, T0, later, [{"progress": 3}])
    assert not await repo.renew("server-b", claimed, T0, later)  # not its lease
    assert (await repo.get("p1", "v1")).progress == 3 and (await repo.get("p2", "v1")).progress == 0
    assert await repo.note("server-a", claimed, file_id="f1")
    assert await repo.finish("server-a", claimed, "GENERATED", later)
    done = await repo.by_operation("p1", "opv1")
    assert (done.state, done.file_id, done.lease_owner, done.update_time) == ("GENERATED", "f1", None, later)
    assert await repo.by_operation("p2", "opv1") is None  # projects never see each other's
    assert not await repo.cancel("p1", "opv1", later)  # ended already
    assert await repo.cancel("p2", "opv2", later)
    cancelled = await repo.get("p2", "v2")
    assert cancelled.state == "FAILED" and cancelled.error.startswith("CANCELLED")
    assert await repo.expire(T0 + timedelta(seconds=3), later) == 1  # p2/v1, still GENERATING
    assert [r.id for r in await repo.of_project("p2")] == ["v2", "v1"]
    assert await repo.remove_expired(T0 + timedelta(days=3)) == 3
    assert await repo.of_project("p1") == []


async def test_quota_takes_are_all_or_none_and_one_limit_across_connections(db: Database, database_url: str) -> None:
    quotas = SqlQuotaRepository(db)
    later = T0 + timedelta(minutes=15)
    rpm, tokens, seat = Charge("rpm", 60, 1, 2), Charge("tpm", 60, 40, 100), Seat("running", 1)
    assert await quotas.take([rpm, tokens], [seat], "a", later, T0) == []
    # Over one limit: nothing is taken, and the ones over are named.
    assert await quotas.take([rpm, replace(tokens, amount=70)], [], "b", later, T0) == [replace(tokens, amount=70)]
    assert (await quotas.used("rpm", 60), await quotas.used("tpm", 60)) == (1, 40)
    assert await quotas.take([rpm], [seat], "c", later, T0) == [seat]
    await quotas.release("a")
    assert await quotas.take([rpm], [seat], "c", later, T0) == []
    assert await quotas.take([rpm], [], "d", later, T0) == [rpm]  # 2 used of 2
    assert await quotas.take([replace(rpm, window_start=120)], [], "d", later, T0) == []  # the next window
    assert await quotas.used("rpm", 60) == 0  # old windows are dropped
    # An expired seat (its server died) is free again.
    assert await quotas.take([], [seat], "e", later, later) == []
    # Two servers (two pools) taking at once: exactly the limit passes.
    other = Database(database_url)
    try:
        racing = [SqlQuotaRepository(db if i % 2 else other) for i in range(10)]
        results = await asyncio.gather(
            *(r.take([Charge("race", 0, 1, 4)], [], f"r{i}", later, T0) for i, r in enumerate(racing))
        )
        assert sum(result == [] for result in results) == 4
        assert await quotas.used("race", 0) == 4
    finally:
        await other.close()
