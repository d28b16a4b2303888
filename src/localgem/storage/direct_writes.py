"""Appending to a file through ``O_DIRECT`` from a kept, aligned buffer.

Uploaded bytes are written once and rarely read back soon: through the page cache each write needs
fresh cache pages (on a virtual machine the first touch of a page can cost more than copying it) and
pushes out pages that are read all the time, such as a model's mapped weights. Direct writes skip the
cache: the bytes are copied into a buffer that is reused from write to write and the disk reads them
from there. Only whole aligned blocks can go direct; the bytes before the first aligned offset of a
write that starts mid-block, and the last partial block, go through the cache. Where the file system
refuses ``O_DIRECT`` (tmpfs, some network file systems) every write goes through the cache.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import Any

ALIGNMENT = 4096  # a multiple of every logical block size Linux file systems use for O_DIRECT
BUFFER_BYTES = 8 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class Buffers:
    """Aligned buffers kept between writes: a fresh buffer's pages fault in on first use."""

    def __init__(self, kept: int = 4) -> None:
        self._free: list[mmap.mmap] = []
        self._kept = kept

    def take(self) -> mmap.mmap:
        return self._free.pop() if self._free else mmap.mmap(-1, BUFFER_BYTES)

    def give(self, buffer: mmap.mmap) -> None:
        if len(self._free) < self._kept:
            self._free.append(buffer)
        # else it is unmapped once its writer's view of it is gone too


class DirectWriter:
    """Appends to ``fd`` (positioned at ``position``) through ``buffer``; ``finish`` writes what is held."""

    def __init__(self, fd: int, position: int, buffer: mmap.mmap) -> None:
        self._fd = fd
        self._buffer = buffer
        self._view = memoryview(buffer)
        self._held = 0
        # Bytes to write through the cache before the file position is aligned.
        self._head = -position % ALIGNMENT
        self._direct = _O_DIRECT != 0 and _set_direct(fd, True)

    def write(self, pieces: list[bytes], hasher: Any = None) -> int:
        """Takes ``pieces`` (hashing them in order); returns how many bytes reached the file."""
        written = 0
        for piece in pieces:
            if hasher is not None:
                hasher.update(piece)
            view = memoryview(piece)
            while view:
                take = min(len(self._view) - self._held, len(view))
                self._view[self._held : self._held + take] = view[:take]
                self._held += take
                view = view[take:]
                if self._held == len(self._view):
                    written += self._flush()
        return written + self._flush()

    def finish(self) -> int:
        """Writes the bytes still held (less than a block, or all of them without O_DIRECT)."""
        written = self._flush()
        if self._held:
            written += self._through_cache(self._held)
        return written

    def _flush(self) -> int:
        written = 0
        if self._head and self._held >= self._head:
            written += self._through_cache(self._head)
            self._head = 0
        if self._head:
            return written
        if not self._direct:
            return written + self._through_cache(self._held)
        aligned = self._held - self._held % ALIGNMENT
        done = 0
        try:
            while done < aligned:
                done += os.write(self._fd, self._view[done:aligned])
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: the file system (or a short write) refuses the alignment
                raise
            _set_direct(self._fd, False)
            self._direct = False
        self._consume(done)
        return written + done + (0 if self._direct else self._through_cache(self._held))

    def _through_cache(self, count: int) -> int:
        if self._direct:
            _set_direct(self._fd, False)
        done = 0
        try:
            while done < count:
                done += os.write(self._fd, self._view[done:count])
        finally:
            if self._direct:
                _set_direct(self._fd, True)
            self._consume(done)
        return done

    def _consume(self, count: int) -> None:
        if count:
            self._buffer.move(0, count, self._held - count)
            self._held -= count


def _set_direct(fd: int, on: bool) -> bool:
    """Turns O_DIRECT on or off for ``fd``; False where the file system refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError:
        return False
    return True
