"""The pages of a freshly zeroed ggml block of a KV cache's logged size go back to the kernel; nothing anyone can
read changes, and no other memory is touched (localgem.zeroed_pages)."""

from __future__ import annotations

import ctypes
import functools
import mmap
import struct
import sys
from collections.abc import Callable

import pytest

from localgem.zeroed_pages import PAGE, Mappings, hand_back_zeroed_buffers
from tests.fresh_interpreter import run_fresh

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc, /proc/self/mem and madvise")

MIB = 1 << 20


def in_a_fresh_interpreter(test: Callable[[], None]) -> Callable[[], None]:
    """Runs ``test`` in a new Python process (see ``tests.fresh_interpreter``): in a long-lived one, glibc may serve
    a block of tens of MiB from free heap it already holds, which a server's KV cache never is."""

    @functools.wraps(test)
    def run() -> None:
        run_fresh(f"import {__name__} as module; module.{test.__name__}.__wrapped__()")

    return run


libc = ctypes.CDLL("libc.so.6")
libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident(address: int, length: int) -> int:
    """Bytes of the pages of [address, address + length) that the kernel backs now (mincore)."""
    first = address - address % PAGE
    pages = (address + length - first + PAGE - 1) // PAGE
    vector = ctypes.create_string_buffer(pages)
    assert libc.mincore(first, pages * PAGE, vector) == 0
    return sum(flag & 1 for flag in vector.raw) * PAGE


def zeroed(size: int, aligned: bool = True) -> int:
    """A block allocated as ggml allocates a KV cache (``posix_memalign`` to 64 bytes; ``aligned`` False: plain
    ``malloc``), written with zeros all through as llama.cpp clears it; its address."""
    if aligned:
        address = ctypes.c_void_p()
        assert libc.posix_memalign(ctypes.byref(address), 64, size) == 0
        block = address.value
    else:
        block = libc.malloc(size)
    assert block
    ctypes.memset(block, 0, size)
    return block


def read(address: int, length: int) -> bytes:
    return ctypes.string_at(address, length)


@in_a_fresh_interpreter
def test_a_new_zeroed_block_of_a_logged_size_goes_back_and_reads_the_same() -> None:
    before = Mappings.now()
    block = zeroed(96 * MIB)
    assert resident(block, 96 * MIB) >= 96 * MIB
    handed = hand_back_zeroed_buffers(before, [96 * MIB + 1000])  # as llama.cpp's log rounds it
    assert 96 * MIB - PAGE <= handed <= 96 * MIB  # all but the part of the first page after glibc's header
    assert resident(block, 96 * MIB) <= PAGE
    assert read(block, 4096) == bytes(4096) and read(block + 50 * MIB, MIB) == bytes(MIB)
    ctypes.memmove(block + 50 * MIB, b"new", 3)  # a page handed back takes writes again
    assert read(block + 50 * MIB, 3) == b"new"
    libc.free(block)


@in_a_fresh_interpreter
def test_blocks_of_another_size_or_kind_or_age_or_content_stay() -> None:
    before = Mappings.now()
    other_size = zeroed(48 * MIB)
    plain = zeroed(48 * MIB, aligned=False)  # malloc's, not ggml's
    written = zeroed(40 * MIB)
    ctypes.memmove(written + 20 * MIB, b"kv", 2)  # not all zeros: not a freshly cleared cache
    assert hand_back_zeroed_buffers(before, [32 * MIB, 40 * MIB]) == 0
    later = Mappings.now()
    assert hand_back_zeroed_buffers(later, [48 * MIB]) == 0  # both 48 MiB blocks were mapped before ``later``
    handed = hand_back_zeroed_buffers(before, [48 * MIB, 48 * MIB])
    assert 47 * MIB <= handed <= 48 * MIB  # ggml's block, not malloc's
    assert resident(other_size, 48 * MIB) <= PAGE and resident(plain, 48 * MIB) >= 48 * MIB
    assert resident(written, 40 * MIB) >= 40 * MIB and read(written + 20 * MIB, 2) == b"kv"
    for block in (other_size, plain, written):
        libc.free(block)


@in_a_fresh_interpreter
def test_only_a_header_as_glibc_writes_it_marks_a_block() -> None:
    """A mapping whose first page gives a matching size, but not the 48 bytes glibc's aligned chunk keeps before
    its header, is not taken for a block; with them, it is."""
    mapped = 40 * MIB + PAGE
    for lead, expected in ((0, 0), (48, 40 * MIB)):
        before = Mappings.now()
        forged = mmap.mmap(-1, mapped, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        forged.write(bytes(mapped))
        struct.pack_into("<QQ", forged, 48, lead, (mapped - 48) | 0x2)  # prev_size; size with IS_MMAPPED
        assert hand_back_zeroed_buffers(before, [mapped - 64]) == expected
        forged.close()


def test_new_ranges_are_what_no_earlier_range_covered() -> None:
    earlier = Mappings(((0x1000, 0x3000), (0x5000, 0x6000)))
    now = Mappings(((0x0, 0x8000), (0x9000, 0xA000), (0x2000, 0x2800)))
    assert list(now.since(earlier)) == [(0x0, 0x1000), (0x3000, 0x5000), (0x6000, 0x8000), (0x9000, 0xA000)]
