"""Kept prefixes: RAM within its budget, disk within its budget, nothing revived once dropped."""

from __future__ import annotations

import os
from pathlib import Path

from localgem.engines.llama.prefixes import KeptPrefix, PrefixStore


def kept(n: int, size: int = 100) -> KeptPrefix:
    return KeptPrefix(tuple(range(n)), bytes([n]) * size)


def test_ram_and_disk_budgets_and_round_trip(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path, ram_bytes=250, disk_bytes=300)  # files of ~140 bytes: two fit
    for key, n in (("a", 1), ("b", 2), ("c", 3)):
        store.put(key, kept(n))
        store.save(key)
        os.utime(tmp_path / f"{key}.kv", (n, n))  # distinct ages
    assert store.get("a") is None and store.get("b") == kept(2) and store.get("c") == kept(3)  # LRU out of RAM
    store._trim_disk()
    assert sorted(f.stem for f in tmp_path.glob("*.kv")) == ["b", "c"]  # oldest file out
    fresh = PrefixStore(tmp_path, ram_bytes=10**6, disk_bytes=10**6)  # a restart
    assert fresh.load("c") == kept(3) and fresh.get("c") == kept(3)
    assert fresh.load("a") is None


def test_a_dropped_key_is_never_kept_again(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path, ram_bytes=10**6, disk_bytes=10**6)
    store.put("a", kept(1))
    store.save("a")
    store.drop("a")
    assert store.load("a") is None and not list(tmp_path.glob("*"))
    store.put("a", kept(1))  # a request that restored it before the drop finishes now
    store.save("a")
    assert store.get("a") is None and not list(tmp_path.glob("*"))


def test_a_file_another_llama_cpp_build_wrote_is_not_read(tmp_path: Path) -> None:
    writer = PrefixStore(tmp_path, ram_bytes=10**6, disk_bytes=10**6, build="old")
    writer.put("a", kept(1))
    writer.save("a")
    assert PrefixStore(tmp_path, ram_bytes=10**6, disk_bytes=10**6, build="new").load("a") is None
    assert PrefixStore(tmp_path, ram_bytes=10**6, disk_bytes=10**6, build="old").load("a") == kept(1)
    header = b"[0]"  # the file format before builds were named: a bare token list
    (tmp_path / "b.kv").write_bytes(len(header).to_bytes(8, "little") + header + b"state")
    assert PrefixStore(tmp_path, ram_bytes=10**6, disk_bytes=10**6).load("b") is None
