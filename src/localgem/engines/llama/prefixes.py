"""Kept prefixes: the KV state of a cached content's prompt, by key, in RAM within a budget and on
disk (so a restart keeps it), for the scheduler to restore into a slot instead of recomputing. A file that
another build of llama.cpp, or the other attention mode, wrote is not read (recomputed instead)."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeptPrefix:
    tokens: tuple[int, ...]  # the tokens whose cells ``state`` holds
    state: bytes


class PrefixStore:
    """Thread-safe: the scheduler reads it, the event loop side fills and empties it."""

    def __init__(self, directory: Path | None, ram_bytes: int, disk_bytes: int, build: str = "") -> None:
        self._dir = directory
        self._build = build  # what computes these states: llama.cpp's build (``library.llama_build``), then its mode
        self._ram_bytes = ram_bytes
        self._disk_bytes = disk_bytes
        self._ram: OrderedDict[str, KeptPrefix] = OrderedDict()
        self._dropped: set[str] = set()  # keys are never reused: a request still running cannot revive one
        self._lock = threading.Lock()

    def computed_in(self, mode: str) -> None:
        """Names the attention mode of the context computing these states (``native.attention_mode``), as it was
        made: states another mode computed are then not read."""
        self._build = f"{self._build} {mode}"

    def get(self, key: str) -> KeptPrefix | None:
        with self._lock:
            kept = self._ram.get(key)
            if kept is not None:
                self._ram.move_to_end(key)
            return kept

    def put(self, key: str, kept: KeptPrefix) -> None:
        with self._lock:
            if key in self._dropped:
                return
            self._ram[key] = kept
            self._ram.move_to_end(key)
            while len(self._ram) > 1 and sum(len(k.state) for k in self._ram.values()) > self._ram_bytes:
                self._ram.popitem(last=False)  # least recently used; still on disk

    def save(self, key: str) -> None:
        """Writes a kept prefix to disk (blocking: call off the event loop), then keeps the disk budget."""
        kept = self.get(key)
        if kept is None or self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        partial = self._dir / f"{key}.partial"
        with open(partial, "wb") as handle:
            header = json.dumps({"build": self._build, "tokens": kept.tokens}).encode()
            handle.write(len(header).to_bytes(8, "little") + header + kept.state)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self._path(key))
        self._trim_disk()

    def load(self, key: str) -> KeptPrefix | None:
        """From RAM, else from disk into RAM (blocking); None when it is kept nowhere."""
        if (kept := self.get(key)) is not None:
            return kept
        if self._dir is None:
            return None
        try:
            raw = self._path(key).read_bytes()
            size = int.from_bytes(raw[:8], "little")
            header = json.loads(raw[8 : 8 + size])
            if not isinstance(header, dict) or header.get("build") != self._build:
                return None  # computed otherwise (or by an older localgem, before builds were named)
            kept = KeptPrefix(tuple(header["tokens"]), raw[8 + size :])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self.put(key, kept)
        return kept

    def drop(self, key: str) -> None:
        with self._lock:
            self._ram.pop(key, None)
            self._dropped.add(key)
        if self._dir is not None:
            self._path(key).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return prefix_file(self._dir, key)

    def _trim_disk(self) -> None:
        """Oldest files go first; their caches are recomputed when next used."""
        assert self._dir is not None
        files = sorted(self._dir.glob("*.kv"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        while files and total > self._disk_bytes and len(files) > 1:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


def prefix_file(directory: Path, key: str) -> Path:
    return directory / f"{key}.kv"
