"""What only the S3 blob store does (the shared contract is tests/storage/test_blob_contract.py): an upload's
state in the bucket (chunks at different replicas), crash leftovers beyond a cut, publishing joined pieces,
and verified local copies. Against a real S3-compatible server (tests/s3_server.py)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localgem.storage.s3_blobs import S3BlobStore, S3Location
from tests.s3_server import S3Server


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


@pytest.fixture
def location(bucket: str) -> S3Location:
    return S3Location.parse(f"s3://{bucket}/{uuid.uuid4().hex}/")


def replica(s3: S3Server, location: S3Location, tmp_path: Path, name: str = "a") -> S3BlobStore:
    return S3BlobStore(s3.client(), location, tmp_path / name / "blob-cache")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_locations() -> None:
    assert S3Location.parse("s3://bucket") == S3Location("bucket", "")
    assert S3Location.parse("s3://bucket/a/b/") == S3Location("bucket", "a/b/")
    with pytest.raises(ValueError):
        S3Location.parse("/var/blobs")


async def test_the_chunks_of_one_upload_may_arrive_at_different_replicas(
    s3: S3Server, location: S3Location, tmp_path: Path
) -> None:
    one, two = replica(s3, location, tmp_path, "one"), replica(s3, location, tmp_path, "two")
    assert await one.write_partial("upload000001", 0, chunks(b"first "), 100) == 6
    assert await two.write_partial("upload000001", 6, chunks(b"second "), 100) == 13
    # The ack for "third" was lost: the client resends from 13 to the other replica, which drops it first.
    assert await one.write_partial("upload000001", 13, chunks(b"thi"), 100) == 16
    assert await two.write_partial("upload000001", 13, chunks(b"third"), 100) == 18
    sealed = await one.seal_partial("upload000001")
    assert (sealed.sha256, sealed.size_bytes) == (sha(b"first second third"), 18)
    await one.publish("upload000001", sealed.sha256)
    assert await two.read_all(sealed.sha256) == b"first second third"


async def test_a_resend_inside_a_piece_keeps_its_head(s3: S3Server, location: S3Location, tmp_path: Path) -> None:
    store = replica(s3, location, tmp_path)
    await store.write_partial("upload000002", 0, chunks(b"0123456789"), 100)
    assert await store.write_partial("upload000002", 4, chunks(b"abcdef"), 100) == 10
    assert (await store.seal_partial("upload000002")).sha256 == sha(b"0123abcdef")
    with pytest.raises(ValueError):  # nothing may be written past the end: there would be a hole
        await store.write_partial("upload000002", 11, chunks(b"x"), 100)


async def test_pieces_beyond_a_gap_left_by_a_crash_are_ignored_then_removed(
    s3: S3Server, location: S3Location, tmp_path: Path
) -> None:
    store = replica(s3, location, tmp_path)
    await store.write_partial("upload000003", 0, chunks(b"kept"), 100)
    # What a crash between the deletes of a cut leaves: a piece past the end of the chain.
    stray = f"{location.prefix}partials/upload000003/{10:020d}"
    s3.client().put_object(Bucket=location.bucket, Key=stray, Body=b"stray")
    assert (await store.seal_partial("upload000003")).size_bytes == 4
    await store.write_partial("upload000003", 4, chunks(b"+more"), 100)  # the cut at 4 removes the stray
    await store.write_partial("upload000003", 9, chunks(b"!"), 100)
    assert (await store.seal_partial("upload000003")).sha256 == sha(b"kept+more!")


async def test_many_small_chunks_are_joined_into_parts_of_at_least_5_mib(
    s3: S3Server, location: S3Location, tmp_path: Path
) -> None:
    store = replica(s3, location, tmp_path)
    data = os.urandom(3 << 20) * 4 + b"end"  # 12 MiB in 3 MiB chunks, each its own write: all below S3's 5 MiB
    offset = 0
    for start in range(0, len(data), 3 << 20):
        offset = await store.write_partial("upload000004", offset, chunks(data[start : start + (3 << 20)]), 1 << 30)
    sealed = await store.seal_partial("upload000004")
    await store.publish("upload000004", sealed.sha256)
    assert await store.read_all(sealed.sha256) == data
    assert await store.partial_ids() == []


async def test_bytes_appended_after_the_seal_are_not_published(
    s3: S3Server, location: S3Location, tmp_path: Path
) -> None:
    one, two = replica(s3, location, tmp_path, "one"), replica(s3, location, tmp_path, "two")
    await one.write_partial("upload000005", 0, chunks(b"sealed"), 100)
    sealed = await one.seal_partial("upload000005")
    await two.write_partial("upload000005", 6, chunks(b" and more"), 100)  # a late chunk at another replica
    await one.publish("upload000005", sealed.sha256)
    assert await one.read_all(sha(b"sealed")) == b"sealed"


async def test_publishing_bytes_under_another_sha256_is_refused(
    s3: S3Server, location: S3Location, tmp_path: Path
) -> None:
    store = replica(s3, location, tmp_path)
    await store.write_partial("upload000006", 0, chunks(b"real bytes"), 100)
    with pytest.raises(ValueError):
        await replica(s3, location, tmp_path, "other").publish("upload000006", sha(b"other bytes"))
    with pytest.raises(FileNotFoundError):
        await store.read_all(sha(b"other bytes"))


async def test_a_local_copy_is_fetched_once_and_verified(s3: S3Server, location: S3Location, tmp_path: Path) -> None:
    store = replica(s3, location, tmp_path)
    await store.write_partial("upload000007", 0, chunks(b"adapter bytes"), 100)
    digest = (await store.seal_partial("upload000007")).sha256
    await store.publish("upload000007", digest)
    path = await store.local_path(digest)
    assert path.read_bytes() == b"adapter bytes" and path.is_relative_to(tmp_path / "a" / "blob-cache")
    with pytest.raises(FileNotFoundError):
        await store.local_path(sha(b"never stored"))
    # Bytes in the bucket that do not match their key never become a local file.
    wrong = sha(b"expected")
    s3.client().put_object(Bucket=location.bucket, Key=f"{location.prefix}blobs/{wrong[:2]}/{wrong}", Body=b"tampered")
    with pytest.raises(OSError, match="sha256"):
        await store.local_path(wrong)
    assert not (tmp_path / "a" / "blob-cache" / wrong[:2] / wrong).exists()
    await store.delete(digest)
    assert not path.exists()


async def test_copies_of_blobs_another_replica_deleted_are_pruned(
    s3: S3Server, location: S3Location, tmp_path: Path
) -> None:
    one, two = replica(s3, location, tmp_path, "one"), replica(s3, location, tmp_path, "two")
    digests = []
    for upload, data in (("upload000008", b"kept adapter"), ("upload000009", b"deleted adapter")):
        await one.write_partial(upload, 0, chunks(data), 100)
        digests.append((await one.seal_partial(upload)).sha256)
        await one.publish(upload, digests[-1])
    kept, deleted = [await two.local_path(digest) for digest in digests]
    await one.delete(digests[1])  # on the other replica: two's copy outlives the blob
    assert deleted.exists()
    assert await one.prune_local_copies() == 0
    assert await two.prune_local_copies() == 1
    assert kept.read_bytes() == b"kept adapter" and not deleted.exists()
    with pytest.raises(FileNotFoundError):
        await two.local_path(digests[1])
