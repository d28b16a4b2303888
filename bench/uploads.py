"""Upload throughput: the Files API through google-genai vs. the least work any durable store does.

In one run, on the same bytes:
  (a) baseline, in this process: write the file in 8 MiB chunks with an fsync after each (what an
      acknowledged chunk costs), hash it (sha256), rename it into place;
  (b) ``client.files.upload(file=...)`` against ``localgem serve`` (SQLite, local blob store): the
      SDK's resumable protocol, 8 MiB chunks over HTTP, each fsynced and recorded before its ack.
Prints MB/s for each and (b)/(a). Each figure is the median of ``--rounds`` interleaved rounds.

    .venv/bin/python bench/uploads.py [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
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
            times: dict[str, list[float]] = {"baseline": [], "localgem": []}
            for _ in range(args.rounds):
                times["baseline"].append(baseline(source, target))
                times["localgem"].append(through_localgem(client, source))
        finally:
            process.terminate()
            process.wait()
    mb = args.size_mb * 1024 * 1024 / 1e6
    rates = {name: mb / statistics.median(values) for name, values in times.items()}
    print(f"{args.size_mb} MiB, median of {args.rounds} rounds")
    print(f"(a) write + fsync per 8 MiB + sha256 + rename, in-process: {rates['baseline']:8.1f} MB/s")
    print(f"(b) client.files.upload -> localgem over HTTP:             {rates['localgem']:8.1f} MB/s")
    print(f"(b)/(a) = {rates['localgem'] / rates['baseline']:.2f}")


if __name__ == "__main__":
    main()
