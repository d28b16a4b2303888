"""The local-disk blob store: what only it does. Its durability protocol (fsync before an ack, rename
then directory fsync), its file layout, and a full disk. What every blob store does is
tests/storage/test_blob_contract.py."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localgem.storage import blobs, direct_writes
from localgem.storage.blobs import LocalBlobStore, StorageFull


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing_after(data: bytes, exc: BaseException) -> AsyncIterator[bytes]:
    yield data
    raise exc


async def test_partials_and_blobs_are_files_in_their_own_directories(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write_partial("upload000001", 0, chunks(b"hello world"), 100)
    assert (tmp_path / "partial" / "upload000001").read_bytes() == b"hello world"
    sealed = await store.seal_partial("upload000001")
    await store.publish("upload000001", sealed.sha256)
    assert not (tmp_path / "partial" / "upload000001").exists()
    assert (tmp_path / "blobs" / sealed.sha256[:2] / sealed.sha256).read_bytes() == b"hello world"


async def test_publishing_known_content_keeps_one_file_on_disk(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for upload_id in ("upload000006", "upload000007"):
        await store.write_partial(upload_id, 0, chunks(b"same"), 10)
        await store.publish(upload_id, (await store.seal_partial(upload_id)).sha256)
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one directory, one blob
    assert list((tmp_path / "partial").iterdir()) == []


async def test_bytes_are_on_disk_before_they_are_acknowledged_and_a_publish_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash right after write_partial returns (the client's ack) or after publish (before the
    database records the file) loses nothing: the partial is fsynced, and the rename into blobs/ is
    made durable by fsyncing both directories."""
    tmp_path = tmp_path.resolve()  # /proc/self/fd names the real path
    store = LocalBlobStore(tmp_path)
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, os.fstat(fd).st_size))

    monkeypatch.setattr(blobs.os, "fsync", recording_fsync)
    partial = str(tmp_path / "partial" / "upload000002")
    assert await store.write_partial("upload000002", 0, chunks(b"acked"), 100) == 5
    assert synced == [(partial, 5)]  # synced with all 5 bytes, before returning
    synced.clear()
    sealed = await store.seal_partial("upload000002")
    await store.publish("upload000002", sealed.sha256)
    assert {path for path, _ in synced} == {str(tmp_path / "blobs" / sealed.sha256[:2]), str(tmp_path / "partial")}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
async def test_a_full_disk_rolls_the_partial_back_to_its_offset(tmp_path: Path, code: int) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write_partial("upload000003", 0, chunks(b"kept"), 1 << 30)
    with pytest.raises(StorageFull):
        await store.write_partial("upload000003", 4, failing_after(b"x" * (2 << 20), OSError(code, "full")), 1 << 30)
    assert (tmp_path / "partial" / "upload000003").read_bytes() == b"kept"
    assert await store.write_partial("upload000003", 4, chunks(b"+more"), 1 << 30) == 9
    assert (await store.seal_partial("upload000003")).sha256 == hashlib.sha256(b"kept+more").hexdigest()


async def test_a_failed_write_leaves_no_bytes_past_the_offset_on_disk(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ConnectionResetError):
        await store.write_partial("upload000004", 0, failing_after(b"y" * (3 << 20), ConnectionResetError()), 1 << 30)
    assert (tmp_path / "partial" / "upload000004").stat().st_size == 0


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


def _recording_writes(monkeypatch: pytest.MonkeyPatch, refuse_direct: bool = False) -> list[tuple[int, int, bool]]:
    """Records each write the store makes as (file offset, length, through O_DIRECT); ``refuse_direct``
    answers O_DIRECT writes as a file system without it does (EINVAL)."""
    writes: list[tuple[int, int, bool]] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        if direct and refuse_direct:
            raise OSError(errno.EINVAL, "Invalid argument")
        writes.append((os.lseek(fd, 0, os.SEEK_CUR), len(data), direct))
        return real_write(fd, data)

    monkeypatch.setattr(direct_writes.os, "write", write)
    return writes


async def test_upload_bytes_skip_the_page_cache_in_whole_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole aligned blocks go through O_DIRECT (no page-cache page is filled for them); only the last
    partial block goes through the cache. Pieces of any size, hashed in order."""
    writes = _recording_writes(monkeypatch)
    store = LocalBlobStore(tmp_path)
    pieces = [os.urandom(size) for size in (1, 65_535, 262_144, 3_000_001, 7 << 20, 12_345)]
    data = b"".join(pieces)
    assert await store.write_partial("upload000010", 0, chunks(*pieces), 1 << 30) == len(data)
    assert (tmp_path / "partial" / "upload000010").read_bytes() == data
    assert (await store.seal_partial("upload000010")).sha256 == hashlib.sha256(data).hexdigest()
    direct = [(at, size) for at, size, is_direct in writes if is_direct]
    cached = [(at, size) for at, size, is_direct in writes if not is_direct]
    assert all(at % 4096 == 0 and size % 4096 == 0 for at, size in direct)
    assert sum(size for _, size in direct) == len(data) - len(data) % 4096
    assert cached == [(len(data) - len(data) % 4096, len(data) % 4096)]


async def test_a_write_that_starts_mid_block_aligns_itself_and_takes_pieces_larger_than_its_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _recording_writes(monkeypatch)
    store = LocalBlobStore(tmp_path)
    head, big, more = b"12345", os.urandom(direct_writes.BUFFER_BYTES * 2 + 777), os.urandom(10_000)
    await store.write_partial("upload000011", 0, chunks(head), 1 << 30)
    writes.clear()
    assert await store.write_partial("upload000011", 5, chunks(big), 1 << 30) == 5 + len(big)
    assert writes[0] == (5, 4091, False)  # up to the first aligned offset through the cache
    assert all(at % 4096 == 0 and size % 4096 == 0 for at, size, is_direct in writes if is_direct)
    assert sum(size for _, size, is_direct in writes if is_direct) >= len(big) - 8192
    assert await store.write_partial("upload000011", 5 + len(big), chunks(more), 1 << 30) == 5 + len(big) + 10_000
    expected = head + big + more
    assert (tmp_path / "partial" / "upload000011").read_bytes() == expected
    assert (await store.seal_partial("upload000011")).sha256 == hashlib.sha256(expected).hexdigest()


async def test_a_file_system_that_refuses_direct_writes_gets_them_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _recording_writes(monkeypatch, refuse_direct=True)
    store = LocalBlobStore(tmp_path)
    pieces = [os.urandom(1 << 20) for _ in range(9)] + [b"tail"]
    data = b"".join(pieces)
    assert await store.write_partial("upload000012", 0, chunks(*pieces), 1 << 30) == len(data)
    assert (tmp_path / "partial" / "upload000012").read_bytes() == data
    assert (await store.seal_partial("upload000012")).sha256 == hashlib.sha256(data).hexdigest()
    assert writes and not any(is_direct for _, _, is_direct in writes)


async def test_more_concurrent_writes_than_kept_buffers_each_get_their_own(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)

    async def slow(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1 << 20):
            await asyncio.sleep(0.001)  # every writer holds its buffer at once
            yield data[start : start + (1 << 20)]

    payloads = {f"upload00002{i}": os.urandom((5 << 20) + i) for i in range(6)}
    sizes = await asyncio.gather(
        *(store.write_partial(name, 0, slow(data), 1 << 30) for name, data in payloads.items())
    )
    assert sizes == [len(data) for data in payloads.values()]
    for name, data in payloads.items():
        assert (tmp_path / "partial" / name).read_bytes() == data
