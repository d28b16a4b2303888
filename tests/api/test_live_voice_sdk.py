"""Live voice sessions on the real models, through google-genai's ``client.aio.live``: speech in (PCM
16 kHz, Whisper hears it), speech out (Piper, 24 kHz), both transcribed, and barge-in."""

from __future__ import annotations

import asyncio
import time

from google import genai
from google.genai import types

from tests.server import RunningServer
from tests.speech import silence, spoken, transcript, word_error_rate

LIVE_MODEL = "gemini-live-2.5-flash-preview"
CHUNK = 3200  # 100 ms of 16 kHz 16-bit audio, as a microphone sends it


async def _speak(session, pcm: bytes, pace: float = 0.0) -> None:
    for at in range(0, len(pcm), CHUNK):
        await session.send_realtime_input(audio=types.Blob(data=pcm[at : at + CHUNK], mime_type="audio/pcm;rate=16000"))
        if pace:
            await asyncio.sleep(pace)


def test_a_voice_turn_hears_answers_aloud_and_transcribes_both_ways(
    live_client: genai.Client, real_tls_server: RunningServer
) -> None:
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck"))
        ),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        system_instruction="Answer in English, in one short sentence.",
        max_output_tokens=40,
        temperature=0,
    )
    question = "Tell me something nice about dogs."

    async def converse():
        heard, said, audio, mimes, first_audio = [], [], [], set(), None
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            await _speak(session, spoken(question) + silence(1.0))
            ended = time.monotonic()
            async for message in session.receive():  # until turnComplete
                content = message.server_content
                if content is None:
                    continue
                if content.input_transcription and content.input_transcription.text:
                    heard.append(content.input_transcription.text)
                if content.output_transcription and content.output_transcription.text:
                    said.append(content.output_transcription.text)
                for part in content.model_turn.parts if content.model_turn else []:
                    assert part.text is None  # an AUDIO session speaks; the words come as transcription
                    mimes.add(part.inline_data.mime_type)
                    audio.append(part.inline_data.data)
                    first_audio = first_audio or time.monotonic()
            return heard, said, b"".join(audio), mimes, first_audio - ended

    heard, said, audio, mimes, latency = asyncio.run(converse())
    assert word_error_rate(question, " ".join(heard)) <= 0.2, heard
    assert mimes == {"audio/pcm;rate=24000"} and len(audio) % 2 == 0
    text = "".join(said)
    assert text.strip() and len(audio) / 2 / 24000 > 0.3
    # What was said aloud is what the transcription says.
    assert word_error_rate(text, transcript(real_tls_server, audio)) <= 0.4, (text, latency)


def test_barge_in_stops_the_answer(live_client: genai.Client) -> None:
    """The user speaks over a long answer: the model stops (interrupted), then answers the new words."""
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        max_output_tokens=300,
        temperature=0,
    )

    async def converse():
        events: list[str] = []
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            await _speak(session, spoken("Please tell me a very long story about a dragon.") + silence(1.0))
            barged = False
            while "interrupted" not in events or events[-1] != "complete":
                async for message in session.receive():  # one turn, to its turnComplete
                    content = message.server_content
                    if content is None:
                        continue
                    if content.model_turn:
                        events.append("audio")
                        if not barged:
                            barged = True
                            await _speak(session, spoken("Stop. What is two plus two?") + silence(1.0), pace=0.02)
                    if content.interrupted:
                        events.append("interrupted")
                    if content.input_transcription and content.input_transcription.text:
                        events.append("heard:" + content.input_transcription.text)
                    if content.turn_complete:
                        events.append("complete")
        return events

    events = asyncio.run(converse())
    assert "interrupted" in events, events
    after = events[events.index("interrupted") :]
    assert any(e.startswith("heard:") and "plus" in e.lower() for e in events), events
    assert "audio" in after, events


def test_audio_stream_end_closes_the_utterance(live_client: genai.Client) -> None:
    """No silence follows the words: audioStreamEnd (the microphone off) ends the utterance."""
    config = types.LiveConnectConfig(
        response_modalities=["TEXT"], input_audio_transcription=types.AudioTranscriptionConfig(), max_output_tokens=8
    )

    async def converse():
        heard, text = [], []
        async with live_client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            await _speak(session, spoken("Good morning to you."))
            await session.send_realtime_input(audio_stream_end=True)
            async for message in session.receive():
                content = message.server_content
                if content and content.input_transcription and content.input_transcription.text:
                    heard.append(content.input_transcription.text)
                text.append(message.text or "")
        return heard, "".join(text)

    heard, text = asyncio.run(converse())
    assert word_error_rate("Good morning to you.", " ".join(heard)) <= 0.25 and text
