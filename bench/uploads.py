"""Upload throughput: the Files API through google-genai vs. the least work any durable store does.

In one run, on the same bytes:
  (a) baseline, in this process: write the file in 8 MiB chunks with an fsync after each (what an
      acknowledged chunk costs), hash it (sha256), rename it into place;
  (a') the same through O_DIRECT: each chunk read straight into one aligned buffer, hashed and written
      from it, so no page-cache page is filled (what localgem's blob store does with upload bytes);
  (b) ``client.files.upload(file=...)`` against ``localgem serve`` (SQLite, local blob store): the
      SDK's resumable protocol, 8 MiB chunks over HTTP, each fsynced and recorded before its ack.
Prints MB/s for each and (b) over the faster baseline. Each figure is the median of ``--rounds``
interleaved rounds. Buffered writes are fast when the kernel has just freed page-cache pages to reuse
and slow when it must find fresh ones (on a virtual machine a page's first touch can cost more than
copying it), so (a) swings with what ran before it; (a') does not.

    .venv/bin/python bench/uploads.py [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import KEY, serve
from google import genai
from google.genai import types

CHUNK = 8 * 1024 * 1024


def baseline(source: Path, target_dir: Path) -> float:
    started = time.perf_counter()
    partial = target_dir / "partial"
    with open(source, "rb") as reader, open(partial, "wb") as writer:
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
    digest = hashlib.sha256()
    with open(partial, "rb") as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    os.replace(partial, target_dir / digest.hexdigest())
    elapsed = time.perf_counter() - started
    (target_dir / digest.hexdigest()).unlink()
    return elapsed


def baseline_direct(source: Path, target_dir: Path) -> float:
    buffer = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT wants; faulted in before the clock starts
    buffer.write(bytes(CHUNK))
    view = memoryview(buffer)
    started = time.perf_counter()
    partial = target_dir / "partial"
    digest = hashlib.sha256()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
    try:
        with open(source, "rb", buffering=0) as reader:
            while count := reader.readinto(view):
                digest.update(view[:count])
                aligned = count - count % 4096
                if aligned:
                    os.write(fd, view[:aligned])
                if aligned < count:  # the last partial block goes through the cache
                    with open(partial, "r+b") as tail:
                        tail.seek(os.lseek(fd, 0, os.SEEK_CUR))
                        tail.write(view[aligned:count])
                        tail.flush()
                os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, target_dir / digest.hexdigest())
    elapsed = time.perf_counter() - started
    (target_dir / digest.hexdigest()).unlink()
    view.release()
    buffer.close()
    return elapsed


def through_localgem(client: genai.Client, source: Path) -> float:
    started = time.perf_counter()
    file = client.files.upload(file=source, config=types.UploadFileConfig(mime_type="application/octet-stream"))
    elapsed = time.perf_counter() - started
    client.files.delete(name=file.name)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "payload.bin"
        with open(source, "wb") as handle:
            for _ in range(args.size_mb):
                handle.write(os.urandom(1024 * 1024))
        target = Path(work) / "baseline"
        target.mkdir()
        url, process = serve(str(Path(work) / "data"), ready_path="/healthz", preload="")
        try:
            client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=url))
            through_localgem(client, source)  # warm-up: connections, first SQLite pages
            times: dict[str, list[float]] = {"baseline": [], "direct": [], "localgem": []}
            for _ in range(args.rounds):
                times["baseline"].append(baseline(source, target))
                times["direct"].append(baseline_direct(source, target))
                times["localgem"].append(through_localgem(client, source))
        finally:
            process.terminate()
            process.wait()
    mb = args.size_mb * 1024 * 1024 / 1e6
    rates = {name: mb / statistics.median(values) for name, values in times.items()}
    print(f"{args.size_mb} MiB, median of {args.rounds} rounds")
    print(f"(a) write + fsync per 8 MiB + sha256 + rename, in-process: {rates['baseline']:8.1f} MB/s")
    print(f"(a') the same through O_DIRECT, in-process:                {rates['direct']:8.1f} MB/s")
    print(f"(b) client.files.upload -> localgem over HTTP:             {rates['localgem']:8.1f} MB/s")
    ours, best = rates["localgem"], max(rates["baseline"], rates["direct"])
    print(f"(b)/(a) = {ours / rates['baseline']:.2f}, (b)/(a') = {ours / rates['direct']:.2f}")
    print(f"(b)/faster baseline = {ours / best:.2f}")


if __name__ == "__main__":
    main()
