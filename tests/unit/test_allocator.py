"""The server keeps memory it frees for reuse (localgem.allocator): checked in a fresh interpreter, where
glibc's malloc reports how much free memory sits at the top of its heap."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

_FREED_AT_TOP = textwrap.dedent(
    """
    import ctypes, sys
    from localgem.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    block = bytearray(8 << 20)  # 8 MiB: its own mapping by default, from the heap when kept
    block[::4096] = b"x" * len(block[::4096])
    in_mappings = libc.mallinfo2().hblkhd
    del block
    print(applied, in_mappings, libc.mallinfo2().keepcost)
    """
)


def _run(mode: str, **environ: str) -> tuple[bool, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _FREED_AT_TOP, mode], capture_output=True, text=True, check=True, env=environ or None
    ).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


def test_freed_memory_stays_for_reuse_instead_of_going_back_to_the_kernel() -> None:
    applied, in_mappings, kept = _run("keep")
    assert applied
    assert in_mappings < 8 << 20  # the block came from the heap, not a mapping of its own
    assert kept >= 8 << 20  # and once freed it stays there, ready for the next request's bytes
    default_applied, default_in_mappings, default_kept = _run("default")
    assert not default_applied
    assert default_in_mappings >= 8 << 20 and default_kept < 8 << 20  # what glibc does unasked


def test_a_users_own_malloc_tuning_stands() -> None:
    applied, in_mappings, _ = _run("keep", **os.environ, MALLOC_MMAP_THRESHOLD_="1048576")
    assert not applied and in_mappings >= 8 << 20
