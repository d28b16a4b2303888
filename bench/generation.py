"""Decode throughput: localgem (engine alone, and over HTTP) against llama-cpp-python called directly.

All three run in this process, on the same GGUF, with greedy decoding and the same number of
generated tokens, and print tokens/s and the ratio to the llama-cpp-python baseline.

    .venv/bin/python bench/generation.py [--tokens 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from localgem.app import create_app
from localgem.engines.base import GenerationRequest, SamplingParams
from localgem.engines.llama.engine import LlamaCppEngine
from localgem.models.packaged import smollm2_135m_instruct
from localgem.settings import load_settings

PROMPT = "Once upon a time, in a small village by the sea,"
KEY = "bench-key"


def llama_cpp_python(path: Path, tokens: int) -> float:
    from llama_cpp import Llama

    threads = os.cpu_count() or 1  # localgem's default; llama-cpp-python's own default is half the cores
    llm = Llama(str(path), n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    start = time.perf_counter()
    out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0)
    elapsed = time.perf_counter() - start
    return _rate("llama-cpp-python", out["usage"]["completion_tokens"], tokens, elapsed)


def localgem_engine(engine: LlamaCppEngine, tokens: int) -> float:
    async def run() -> float:
        prompt = await engine.tokenize(PROMPT, engine.info.add_bos)
        request = GenerationRequest(prompt, SamplingParams(temperature=0), max_tokens=tokens)
        start = time.perf_counter()
        async for _ in engine.generate(request):
            pass
        return _rate("localgem engine", engine.stats.last_request_tokens_generated, tokens, time.perf_counter() - start)

    return asyncio.run(run())


def localgem_http(url: str, tokens: int) -> float:
    # A base-model prompt without EOS pressure: the raw text continues for `tokens` tokens.
    body = {
        "contents": [{"parts": [{"text": PROMPT}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": tokens},
    }
    start = time.perf_counter()
    response = httpx.post(
        f"{url}/v1beta/models/smollm2-135m-instruct:generateContent",
        json=body,
        headers={"x-goog-api-key": KEY},
        timeout=600,
    ).json()
    elapsed = time.perf_counter() - start
    return _rate("localgem HTTP", response["usageMetadata"]["candidatesTokenCount"], tokens, elapsed)


def _rate(name: str, produced: int, wanted: int, seconds: float) -> float:
    if produced != wanted:  # a run that stopped early did less work: its rate is not comparable
        raise SystemExit(f"{name} generated {produced} tokens, not {wanted}: pick another prompt")
    return produced / seconds


def serve(data_dir: str) -> tuple[str, uvicorn.Server]:
    app = create_app(load_settings(environ={}, data_dir=Path(data_dir), api_keys=[KEY]))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = smollm2_135m_instruct(Path())
    engine = LlamaCppEngine(path, context_length=2048)
    with tempfile.TemporaryDirectory() as data_dir:
        url, server = serve(data_dir)
        results: dict[str, list[float]] = {"llama-cpp-python": [], "localgem engine": [], "localgem HTTP": []}
        for _ in range(args.runs):
            results["llama-cpp-python"].append(llama_cpp_python(path, args.tokens))
            results["localgem engine"].append(localgem_engine(engine, args.tokens))
            results["localgem HTTP"].append(localgem_http(url, args.tokens))
        server.should_exit = True
    asyncio.run(engine.close())
    baseline = statistics.median(results["llama-cpp-python"])
    print(f"SmolLM2-135M Q4_1, greedy, {args.tokens} tokens, median of {args.runs}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:18s} {median:7.1f} tok/s  ratio {median / baseline:5.2f}")


if __name__ == "__main__":
    main()
