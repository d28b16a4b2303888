"""Handing back to the kernel the pages of llama.cpp's KV cache, which it fills with zeros as it makes a context.

llama.cpp allocates a context's KV cache whole (slots × cells: 1,440 MiB for SmolLM2's 8 × 8,192) and writes
zeros over all of it, so the kernel backs every cell from the start, used or not. A private anonymous page that
holds only zeros reads the same after ``MADV_DONTNEED`` (the kernel maps its shared zero page until the page is
written again), so handing those pages back changes nothing llama.cpp can see, and the cache is then backed as
cells are written: a slot that held 500 tokens holds ~500 cells' pages.

llama.cpp's API does not give the buffer's address, and the kernel merges its mapping with its neighbours', so
it is found by what must all hold at once: it lies in memory mapped while the context was made; it is a block
of ggml's allocator (``posix_memalign`` to 64 bytes) that glibc mapped on its own, whose header glibc keeps in
the page before; its size is one llama.cpp logged for a KV buffer while making the context; and every page of it
holds only zeros. Where any of that fails (another C library, say) nothing is handed back. Memory is read
through ``/proc/self/mem``, where an address another thread unmapped meanwhile fails the read, not the process.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import struct
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from localgem.allocator import libc

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
#: Smaller buffers stay (a KV cache is hundreds of MiB at the default 8 × 8,192 cells).
MINIMUM_BUFFER = 8 << 20
#: How far a block's size may be from the one llama.cpp logged: its log rounds to 0.01 MiB, and glibc's mapping
#: ends on a page.
SIZE_SLACK = PAGE + (8 << 10)
IS_MMAPPED = 0x2
#: Bytes read at a time, by this many threads.
CHUNK = 4 << 20
READERS = 2
MADV_DONTNEED = 4


@dataclass(frozen=True)
class Mappings:
    """The private, writable, anonymous address ranges of this process at one moment."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def now(cls) -> Mappings:
        if not sys.platform.startswith("linux"):
            return cls(())
        found = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                # address perms offset dev inode [path]: an anonymous mapping has no path, or a name of its own
                anonymous = len(fields) == 5 or fields[5].startswith("[anon:")
                if anonymous and fields[1].startswith("rw") and fields[1][3] == "p":
                    start, end = (int(part, 16) for part in fields[0].split("-"))
                    found.append((start, end))
        return cls(tuple(found))

    def since(self, earlier: Mappings) -> Iterator[tuple[int, int]]:
        """The parts of these ranges that no range of ``earlier`` covered."""
        old = sorted(earlier.ranges)
        for start, end in self.ranges:
            cursor = start
            for old_start, old_end in old:
                if old_end <= cursor or old_start >= end:
                    continue
                if old_start > cursor:
                    yield cursor, old_start
                cursor = max(cursor, old_end)
                if cursor >= end:
                    break
            if cursor < end:
                yield cursor, end


def hand_back_zeroed_buffers(before: Mappings, sizes: list[int]) -> int:
    """Hands back the pages of the zero-filled buffers of these sizes (each within ``SIZE_SLACK``) that ggml
    allocated since ``before``; returns the bytes handed back (0 where this is not Linux with glibc)."""
    wanted = [size for size in sizes if size >= MINIMUM_BUFFER]
    if not wanted or not sys.platform.startswith("linux"):
        return 0
    try:
        memory = os.open("/proc/self/mem", os.O_RDONLY)
        madvise = _madvise()
    except OSError as error:
        log.debug("cannot read this process's memory (%s): the KV cache stays backed", error)
        return 0
    handed = 0
    # Reading this process's memory is copying it (~3.5 GB/s a core here): two readers take half the time.
    readers = ThreadPoolExecutor(READERS, thread_name_prefix="zeroed-pages")
    try:
        for start, end in Mappings.now().since(before):
            for run_start, run_end in _zero_runs(memory, start, end, readers):
                # The header's page was mapped with the block's: it too lies in the new range.
                if run_end - run_start < min(wanted) - SIZE_SLACK or run_start - PAGE < start:
                    continue
                data_end = _ggml_block_end(memory, run_start, wanted)
                if data_end is not None and data_end <= run_end:
                    if madvise(ctypes.c_void_p(run_start), ctypes.c_size_t(data_end - run_start), MADV_DONTNEED) == 0:
                        handed += data_end - run_start
                if not wanted:  # every block found: the rest is not read
                    return handed
    finally:
        readers.shutdown(cancel_futures=True)
        os.close(memory)
    return handed


def _ggml_block_end(memory: int, run_start: int, wanted: list[int]) -> int | None:
    """Where the block ends if the zero run at ``run_start`` is the data of one ``ggml_aligned_malloc`` made of one
    of the ``wanted`` sizes (taken from the list once found), else None.

    glibc maps such a block with its header in the first page: the block's data begins 64 bytes in, after the
    16-byte header of the aligned chunk at offset 48 (its ``prev_size``, 48, the bytes before it in the mapping;
    its size with ``IS_MMAPPED``), and ends where the mapping does."""
    header = run_start - PAGE
    try:
        words = os.pread(memory, 64, header)
    except OSError:
        return None
    if len(words) != 64:
        return None
    lead, size = struct.unpack_from("<QQ", words, 48)
    if lead != 48 or not size & IS_MMAPPED:
        return None
    data_end = header + 48 + (size & ~0x7)
    usable = data_end - (header + 64)
    for wanted_size in wanted:
        if abs(usable - wanted_size) <= SIZE_SLACK:
            wanted.remove(wanted_size)
            return data_end - data_end % PAGE
    return None


def _zero_pages(memory: int, start: int, length: int) -> np.ndarray | None:
    """For each page of [start, start + length): whether it holds only zeros; None if it cannot be read."""
    buffer = np.empty(length // 8, dtype=np.uint64)
    try:
        if os.preadv(memory, [memoryview(buffer).cast("B")], start) != length:
            return None
    except OSError:
        return None
    return ~buffer.reshape(-1, PAGE // 8).any(axis=1)


def _runs(zero: np.ndarray, base: int) -> Iterator[tuple[int, int]]:
    """The address ranges of consecutive True pages in ``zero``, page 0 at ``base``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], zero, [False])).astype(np.int8)))
    for first, past in zip(edges[::2], edges[1::2], strict=True):
        yield base + int(first) * PAGE, base + int(past) * PAGE


def _zero_runs(memory: int, start: int, end: int, readers: ThreadPoolExecutor) -> Iterator[tuple[int, int]]:
    """Maximal runs of zero pages in [start, end), read a chunk at a time by ``readers`` (a run may span chunks)."""
    carried: int | None = None  # where a run reaching the end of the chunk before began
    reached = start
    chunks = range(start, end, CHUNK)
    pages = readers.map(lambda chunk: _zero_pages(memory, chunk, min(CHUNK, end - chunk)), chunks)
    for chunk, zero in zip(chunks, pages, strict=True):
        if zero is None:
            break
        length = min(CHUNK, end - chunk)
        reached = chunk + length
        incoming, carried = carried, None
        for first, past in _runs(zero, chunk):
            if incoming is not None:
                if first == chunk:
                    first = incoming
                else:
                    yield incoming, chunk
                incoming = None
            if past == reached:
                carried = first
            else:
                yield first, past
        if incoming is not None:
            yield incoming, chunk
    if carried is not None:
        yield carried, reached


def _madvise():
    madvise = libc().madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise
