"""The local blob store: durable partial writes, rollback on failure, content addressing, safe paths."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localgem.storage import blobs
from localgem.storage.blobs import LocalBlobStore, StorageFull, TooLarge


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing_after(data: bytes, exc: BaseException) -> AsyncIterator[bytes]:
    yield data
    raise exc


async def test_partial_bytes_append_then_publish_by_content(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    assert await store.write_partial("upload000001", 0, chunks(b"hello "), 100) == 6
    assert await store.write_partial("upload000001", 6, chunks(b"wor", b"ld"), 100) == 11
    sealed = await store.seal_partial("upload000001")
    assert sealed.sha256 == hashlib.sha256(b"hello world").hexdigest() and sealed.size_bytes == 11
    await store.publish("upload000001", sealed.sha256)
    assert await store.read_all(sealed.sha256) == b"hello world"
    assert b"".join([c async for c in store.read(sealed.sha256)]) == b"hello world"
    assert await store.partial_ids() == []
    assert (tmp_path / "blobs" / sealed.sha256[:2] / sealed.sha256).exists()


async def test_unacknowledged_bytes_are_dropped_when_writing_resumes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write_partial("upload000002", 0, chunks(b"abcdef"), 100)
    # The client was told 3 bytes arrived (say the ack for the rest was lost): it resends from 3.
    assert await store.write_partial("upload000002", 3, chunks(b"DEF"), 100) == 6
    assert (await store.seal_partial("upload000002")).sha256 == hashlib.sha256(b"abcDEF").hexdigest()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
async def test_a_full_disk_rolls_the_partial_back_to_its_offset(tmp_path: Path, code: int) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write_partial("upload000003", 0, chunks(b"kept"), 1 << 30)
    with pytest.raises(StorageFull):
        await store.write_partial("upload000003", 4, failing_after(b"x" * (2 << 20), OSError(code, "full")), 1 << 30)
    assert (tmp_path / "partial" / "upload000003").read_bytes() == b"kept"
    assert await store.write_partial("upload000003", 4, chunks(b"+more"), 1 << 30) == 9
    assert (await store.seal_partial("upload000003")).sha256 == hashlib.sha256(b"kept+more").hexdigest()


async def test_a_broken_connection_rolls_back_too(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ConnectionResetError):
        await store.write_partial("upload000004", 0, failing_after(b"y" * (3 << 20), ConnectionResetError()), 1 << 30)
    assert (tmp_path / "partial" / "upload000004").stat().st_size == 0


async def test_more_than_the_limit_is_refused_and_rolled_back(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(TooLarge):
        await store.write_partial("upload000005", 0, chunks(b"12345", b"678"), 6)
    assert (tmp_path / "partial" / "upload000005").stat().st_size == 0


async def test_publishing_known_content_keeps_one_copy(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for upload_id in ("upload000006", "upload000007"):
        await store.write_partial(upload_id, 0, chunks(b"same"), 10)
        await store.publish(upload_id, (await store.seal_partial(upload_id)).sha256)
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one directory, one blob
    assert await store.partial_ids() == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "UPPER0000000", "short", "a/b/c/d/e/f/g", "x" * 41])
async def test_no_unchecked_id_reaches_a_path(tmp_path: Path, bad: str) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ValueError):
        await store.write_partial(bad, 0, chunks(b"x"), 10)
    with pytest.raises(ValueError):
        await store.read_all(bad)
    with pytest.raises(ValueError):
        await store.delete("../" + "a" * 61)


async def test_stale_blobs_are_those_older_than_the_grace(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write_partial("upload000008", 0, chunks(b"old"), 10)
    sha = (await store.seal_partial("upload000008")).sha256
    await store.publish("upload000008", sha)
    assert await store.stale_blobs(3600) == []
    path = tmp_path / "blobs" / sha[:2] / sha
    os.utime(path, (1, 1))
    assert await store.stale_blobs(3600) == [sha]


async def test_a_failure_in_a_write_overlapping_the_network_rolls_back_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write_partial("upload000009", 0, chunks(b"head"), 1 << 30)
    real_write = blobs._write_all
    calls = 0

    def fail_second(fd: int, pieces: list[bytes], hasher=None) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, pieces, hasher)

    monkeypatch.setattr(blobs, "_write_all", fail_second)
    many = [b"m" * (1 << 20)] * 12  # three batches of 4 MiB: the second fails while the third arrives
    with pytest.raises(StorageFull):
        await store.write_partial("upload000009", 4, chunks(*many), 1 << 30)
    assert (tmp_path / "partial" / "upload000009").read_bytes() == b"head"
    monkeypatch.setattr(blobs, "_write_all", real_write)
    assert await store.write_partial("upload000009", 4, chunks(*many), 1 << 30) == 4 + 12 * (1 << 20)
    sealed = await store.seal_partial("upload000009")
    assert sealed.sha256 == hashlib.sha256(b"head" + b"".join(many)).hexdigest()
