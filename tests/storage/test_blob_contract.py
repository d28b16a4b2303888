"""One contract for the blob stores (storage/blobs.py ``BlobStore``), run over every backend.

A backend joins by adding an entry to BACKENDS: how to open a store over the same storage again
(a restart), and how to make a blob look older (for the orphan sweep's grace; S3 cannot backdate an
object, so there the grace is a second and ageing is waiting). What only one backend
does (local disk: fsync, ENOSPC, the file layout) is tested with that backend (tests/unit/test_blobs.py).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from localgem.storage.blobs import BlobStore, LocalBlobStore, TooLarge
from localgem.storage.s3_blobs import S3BlobStore, S3Location


@dataclass(frozen=True)
class Backend:
    open: Callable[[], BlobStore]  # each call: a new store over the same storage, as after a restart
    age: Callable[[str, float], None]  # make a blob look ``seconds`` older
    grace: float = 3600  # the orphan sweep's grace the test uses


def local_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    root = tmp_path / "blob-store"

    def age(sha256: str, seconds: float) -> None:
        then = time.time() - seconds
        os.utime(root / "blobs" / sha256[:2] / sha256, (then, then))

    return Backend(open=lambda: LocalBlobStore(root), age=age)


def s3_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A real S3 server (tests/s3_server.py), each test under a prefix of its own."""
    server = request.getfixturevalue("s3")
    client = server.client()
    try:
        client.create_bucket(Bucket="contract")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    location = S3Location.parse(f"s3://contract/{uuid.uuid4().hex}")

    def age(sha256: str, seconds: float) -> None:
        key = f"{location.prefix}blobs/{sha256[:2]}/{sha256}"
        stored_at = client.head_object(Bucket=location.bucket, Key=key)["LastModified"].timestamp()
        time.sleep(max(0.0, stored_at + 1 + seconds - time.time()) + 0.05)  # LastModified is in whole seconds

    return Backend(open=lambda: S3BlobStore(client, location, tmp_path / "cache"), age=age, grace=1)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {"local-disk": local_disk, "s3": s3_bucket}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> BlobStore:
    return backend.open()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing_after(data: bytes, exc: BaseException) -> AsyncIterator[bytes]:
    yield data
    raise exc


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stored(store: BlobStore, upload_id: str, data: bytes) -> str:
    """``data`` uploaded in one piece and published; its sha256."""
    await store.write_partial(upload_id, 0, chunks(data), len(data))
    sealed = await store.seal_partial(upload_id)
    await store.publish(upload_id, sealed.sha256)
    return sealed.sha256


async def test_partial_bytes_append_then_publish_by_content(store: BlobStore) -> None:
    assert await store.write_partial("upload000001", 0, chunks(b"hello "), 100) == 6
    assert await store.partial_ids() == ["upload000001"]
    assert await store.write_partial("upload000001", 6, chunks(b"wor", b"ld"), 100) == 11
    sealed = await store.seal_partial("upload000001")
    assert (sealed.sha256, sealed.size_bytes) == (sha(b"hello world"), 11)
    await store.publish("upload000001", sealed.sha256)
    assert await store.read_all(sealed.sha256) == b"hello world"
    assert b"".join([c async for c in store.read(sealed.sha256)]) == b"hello world"
    assert await store.partial_ids() == []


async def test_a_large_blob_reads_back_in_chunks(store: BlobStore) -> None:
    data = os.urandom(5 << 20) + b"tail"
    digest = await stored(store, "upload000002", data)
    pieces = [c async for c in store.read(digest)]
    assert b"".join(pieces) == data and len(pieces) > 1


async def test_an_empty_upload_is_the_empty_blob(store: BlobStore) -> None:
    assert await store.write_partial("upload000003", 0, chunks(), 0) == 0
    sealed = await store.seal_partial("upload000003")
    assert (sealed.sha256, sealed.size_bytes) == (sha(b""), 0)
    await store.publish("upload000003", sealed.sha256)
    assert await store.read_all(sealed.sha256) == b""


async def test_unacknowledged_bytes_are_dropped_when_writing_resumes(store: BlobStore) -> None:
    await store.write_partial("upload000004", 0, chunks(b"abcdef"), 100)
    # The client was told 3 bytes arrived (say the ack for the rest was lost): it resends from 3.
    assert await store.write_partial("upload000004", 3, chunks(b"DEF"), 100) == 6
    assert (await store.seal_partial("upload000004")).sha256 == sha(b"abcDEF")


async def test_a_failing_source_rolls_the_partial_back_to_its_offset(store: BlobStore) -> None:
    await store.write_partial("upload000005", 0, chunks(b"kept"), 1 << 30)
    with pytest.raises(ConnectionResetError):
        await store.write_partial("upload000005", 4, failing_after(b"y" * (3 << 20), ConnectionResetError()), 1 << 30)
    sealed = await store.seal_partial("upload000005")
    assert (sealed.sha256, sealed.size_bytes) == (sha(b"kept"), 4)
    assert await store.write_partial("upload000005", 4, chunks(b"+more"), 1 << 30) == 9
    assert (await store.seal_partial("upload000005")).sha256 == sha(b"kept+more")


async def test_the_limit_counts_every_byte_and_more_is_rolled_back(store: BlobStore) -> None:
    await store.write_partial("upload000006", 0, chunks(b"abc"), 6)
    with pytest.raises(TooLarge):
        await store.write_partial("upload000006", 3, chunks(b"de", b"fg"), 6)
    assert (await store.seal_partial("upload000006")).size_bytes == 3
    assert await store.write_partial("upload000006", 3, chunks(b"def"), 6) == 6  # exactly the limit is taken
    assert (await store.seal_partial("upload000006")).sha256 == sha(b"abcdef")
    with pytest.raises(TooLarge):
        await store.write_partial("upload000007", 0, chunks(b"12345", b"678"), 6)
    assert (await store.seal_partial("upload000007")).size_bytes == 0


async def test_known_content_keeps_one_copy_and_the_store_counts_no_users(store: BlobStore) -> None:
    first = await stored(store, "upload000008", b"same")
    second = await stored(store, "upload000009", b"same")
    assert first == second == sha(b"same")
    assert await store.partial_ids() == []
    assert await store.read_all(first) == b"same"
    # Who still uses a blob is the files repository's business: one delete removes it.
    await store.delete(first)
    with pytest.raises(FileNotFoundError):
        await store.read_all(first)


async def test_a_discarded_partial_leaves_nothing_and_a_published_one_is_kept(store: BlobStore) -> None:
    await store.write_partial("upload000010", 0, chunks(b"never published"), 100)
    unpublished = (await store.seal_partial("upload000010")).sha256
    await store.discard_partial("upload000010")
    assert await store.partial_ids() == []
    with pytest.raises(FileNotFoundError):
        await store.read_all(unpublished)
    published = await stored(store, "upload000011", b"published")
    await store.discard_partial("upload000011")  # what processing does after publishing: a no-op
    assert await store.read_all(published) == b"published"


async def test_missing_blobs_and_partials(store: BlobStore) -> None:
    missing = sha(b"never stored")
    with pytest.raises(FileNotFoundError):
        await store.read_all(missing)
    with pytest.raises(FileNotFoundError):
        async for _ in store.read(missing):
            pass
    await store.delete(missing)
    await store.discard_partial("upload000012")
    assert await store.partial_ids() == []
    assert await store.stale_blobs(0) == []


async def test_acknowledged_bytes_survive_a_restart_and_the_upload_resumes(backend: Backend) -> None:
    before = backend.open()
    digest = await stored(before, "upload000013", b"a finished file")
    assert await before.write_partial("upload000014", 0, chunks(b"acknowledged "), 1 << 20) == 13
    after = backend.open()
    assert await after.read_all(digest) == b"a finished file"
    assert await after.partial_ids() == ["upload000014"]
    assert await after.write_partial("upload000014", 13, chunks(b"then resumed"), 1 << 20) == 25
    sealed = await after.seal_partial("upload000014")
    assert (sealed.sha256, sealed.size_bytes) == (sha(b"acknowledged then resumed"), 25)


async def test_stale_blobs_are_those_older_than_the_grace(backend: Backend, store: BlobStore) -> None:
    old = await stored(store, "upload000015", b"old")
    new = await stored(store, "upload000016", b"new")
    assert await store.stale_blobs(backend.grace) == []
    backend.age(old, 2 * backend.grace)
    backend.age(new, 2 * backend.grace)
    assert sorted(await store.stale_blobs(backend.grace)) == sorted([old, new])
    # Content published again is in use again: the orphan sweep must leave it alone.
    assert await stored(store, "upload000017", b"new") == new
    assert await store.stale_blobs(backend.grace) == [old]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "UPPER0000000", "short", "a/b/c/d/e/f/g", "x" * 41])
async def test_no_unchecked_upload_id_reaches_storage(store: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        await store.write_partial(bad, 0, chunks(b"x"), 10)
    with pytest.raises(ValueError):
        await store.seal_partial(bad)
    with pytest.raises(ValueError):
        await store.publish(bad, sha(b"x"))
    with pytest.raises(ValueError):
        await store.discard_partial(bad)


@pytest.mark.parametrize("bad", ["../" + "a" * 61, "A" * 64, "a" * 63, "g" * 64, "a" * 64 + "/"])
async def test_no_unchecked_sha256_reaches_storage(store: BlobStore, bad: str) -> None:
    await store.write_partial("upload000018", 0, chunks(b"x"), 10)
    with pytest.raises(ValueError):
        await store.publish("upload000018", bad)
    with pytest.raises(ValueError):
        await store.read_all(bad)
    with pytest.raises(ValueError):
        async for _ in store.read(bad):
            pass
    with pytest.raises(ValueError):
        await store.delete(bad)
    assert await store.partial_ids() == ["upload000018"]  # the refused publish consumed nothing
