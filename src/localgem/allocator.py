"""How the C allocator (glibc's malloc) treats memory the server frees.

By default glibc maps blocks above 128 KiB on their own (unmapped again when freed) and gives the free
top of the heap back to the kernel once it passes about twice that, so a server that receives a request
body in 256 KiB pieces, or makes a vocabulary's logits each step, asks the kernel for fresh pages again
and again. Each fresh page costs a fault and zeroing, and on a virtual machine the first touch of a page
can cost far more (about 6 µs here, more than copying it): an upload's pages each faulted once (68,000
faults per 256 MiB, 350 → 425 MB/s without them). Keeping freed memory for reuse, as jemalloc and
tcmalloc do, trades at most ``TRIM_BYTES`` of idle memory per allocator arena for that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free heap kept before any is given back to the kernel.
TRIM_BYTES = 64 << 20
#: Blocks from this size up still get mappings of their own (given back as soon as they are freed).
MMAP_BYTES = 16 << 20
#: glibc's own variables for the same settings: where a user set one, theirs stands.
_ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, its ``errno`` kept for ``ctypes.get_errno``; OSError where there is none to load."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory for reuse; False where it does not apply (another C
    library, or the user tuned malloc through its environment variables)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _ENVIRONMENT):
        return False
    try:
        mallopt = libc().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
