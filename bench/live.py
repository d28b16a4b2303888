"""Live API vs streamGenerateContent, same run: 8 conversations × 5 turns, time to first text per turn.

Live: 8 concurrent sessions through google-genai over wss:// (`serve --tls`), one turn after another.
Baseline: the same 8 conversations, each turn a streamGenerateContent call carrying the whole history
(what a client without the Live API sends), 8 concurrent, over the same HTTPS port. Rounds alternate.
Prints p50/p95 of time to first text for each turn of each, and Live's turn-5 ÷ turn-1 p50 (a session
reuses its earlier turns' KV state, so later turns should not be slower: target ≤ 1.2).

    .venv/bin/python bench/live.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import tempfile
import time

import httpx
from common import KEY, certificate, serve
from google import genai
from google.genai import types

SESSIONS = 8
TOPICS = ["the sea", "bees", "trains", "volcanoes", "chess", "bread", "owls", "rivers"]
QUESTIONS = [
    "Tell me one fact about {topic}.",
    "Why is that interesting?",
    "Give me another fact.",
    "How would you explain it to a child?",
    "Sum up our talk in one sentence.",
]
CONFIG = {"temperature": 0, "maxOutputTokens": 32}
MODEL = "gemini-live-2.5-flash-preview"


async def live_conversation(client: genai.Client, topic: str) -> list[float]:
    config = types.LiveConnectConfig(response_modalities=["TEXT"], temperature=0, max_output_tokens=32)
    times = []
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        for question in QUESTIONS:
            start, first = time.perf_counter(), None
            await session.send_realtime_input(text=question.format(topic=topic))
            async for message in session.receive():
                if first is None and message.text:
                    first = time.perf_counter() - start
            times.append(first if first is not None else float("nan"))
    return times


async def rest_conversation(http: httpx.AsyncClient, url: str, topic: str) -> list[float]:
    history: list[dict] = []
    times = []
    for question in QUESTIONS:
        history.append({"role": "user", "parts": [{"text": question.format(topic=topic)}]})
        start, first, text = time.perf_counter(), None, []
        body = {"contents": history, "generationConfig": CONFIG}
        async with http.stream(
            "POST", f"{url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=body
        ) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                parts = json.loads(line[5:])["candidates"][0].get("content", {}).get("parts", [])
                chunk = "".join(part.get("text", "") for part in parts)
                if chunk and first is None:
                    first = time.perf_counter() - start
                text.append(chunk)
        times.append(first if first is not None else float("nan"))
        history.append({"role": "model", "parts": [{"text": "".join(text)}]})
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(name: str, per_turn: list[list[float]]) -> list[float]:
    medians = []
    for turn, values in enumerate(per_turn, 1):
        medians.append(statistics.median(values))
        print(
            f"  {name:6} turn {turn}: p50 {medians[-1] * 1000:7.1f} ms   p95 {percentile(values, 0.95) * 1000:7.1f} ms"
        )
    return medians


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        url, process = serve(data_dir, tls=True)
        try:
            context = ssl.create_default_context(cafile=certificate(data_dir))
            client = genai.Client(
                api_key=KEY, http_options=types.HttpOptions(base_url=url, async_client_args={"ssl": context})
            )
            live: list[list[float]] = [[] for _ in QUESTIONS]
            rest: list[list[float]] = [[] for _ in QUESTIONS]
            async with httpx.AsyncClient(verify=context, headers={"x-goog-api-key": KEY}, timeout=600) as http:
                await rest_conversation(http, url, "warming up")
                for _ in range(rounds):
                    for runs, target in (
                        (live, lambda topic: live_conversation(client, topic)),
                        (rest, lambda topic: rest_conversation(http, url, topic)),
                    ):
                        for times in await asyncio.gather(*(target(topic) for topic in TOPICS[:SESSIONS])):
                            for turn, seconds in enumerate(times):
                                runs[turn].append(seconds)
            print(
                f"{SESSIONS} concurrent conversations × {len(QUESTIONS)} turns, {rounds} round(s); time to first text:"
            )
            live_p50 = report("Live", live)
            rest_p50 = report("REST", rest)
            for turn in range(len(QUESTIONS)):
                print(f"  turn {turn + 1}: Live ÷ REST p50 = {live_p50[turn] / rest_p50[turn]:.2f}")
            print(f"Live turn-5 ÷ turn-1 p50 = {live_p50[-1] / live_p50[0]:.2f} (target ≤ 1.2)")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args().rounds))
