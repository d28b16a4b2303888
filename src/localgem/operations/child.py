"""What the executors that work in a child process share (tuning's trainer, the video worker): how the child is
started (niced, and killed with the server), the JSON events it prints, and the file it leaves, read back."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

_PR_SET_PDEATHSIG = 1


async def start_module(module: str, *args: str, stderr: BinaryIO, niceness: int) -> asyncio.subprocess.Process:
    """``python -m module args…``, its stdout piped (events), niced, and dying with the server (Linux)."""

    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        preexec_fn=_detach(niceness),
    )


def _detach(niceness: int) -> Callable[[], None]:
    def detach() -> None:  # in the child, before exec
        os.nice(niceness)
        prctl = getattr(ctypes.CDLL(None), "prctl", None)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return detach


async def events(stream: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The child's events: JSON objects with an ``event``, one per line (other lines, a library's prints, skipped)."""
    while line := await stream.readline():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            yield event


async def read_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 1 << 20):
            yield chunk
