"""Live voice on the real HTTP stack and the real speech models (Whisper, Silero VAD, Piper) over the
fake text engine: when speech starts and ends a turn, what is heard, barge-in, queueing, bad audio."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.live import closed, open_session, receive, send
from tests.server import RunningServer
from tests.speech import silence, spoken, word_error_rate

CHUNK = 3200
SAID = "Good morning to you."


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    return FakeEngine(delay=0.002)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine: FakeEngine) -> Iterator[RunningServer]:
    server = start_fake_server(tmp_path_factory.mktemp("voice"), engine)
    yield server
    server.stop()


def _audio(pcm: bytes, mime: str = "audio/pcm;rate=16000") -> dict[str, Any]:
    return {"realtimeInput": {"audio": {"data": base64.b64encode(pcm).decode(), "mimeType": mime}}}


def _say(ws, pcm: bytes) -> None:
    for at in range(0, len(pcm), CHUNK):
        send(ws, _audio(pcm[at : at + CHUNK]))


def _until_complete(ws, timeout: float = 60) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = receive(ws, timeout)
        messages.append(message)
        if message.get("serverContent", {}).get("turnComplete"):
            return messages


def _heard(messages: list[dict[str, Any]]) -> str:
    return " ".join(
        m["serverContent"]["inputTranscription"]["text"]
        for m in messages
        if "inputTranscription" in m.get("serverContent", {})
    )


def _quiet(ws, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        receive(ws, seconds)


def test_speech_then_silence_is_a_turn_and_silence_alone_is_none(server: RunningServer, engine: FakeEngine) -> None:
    with open_session(server, API_KEY, {"inputAudioTranscription": {}}) as ws:
        _say(ws, silence(3.0))
        _quiet(ws, 1.5)  # no speech: nothing heard, no turn
        _say(ws, spoken(SAID) + silence(1.0))
        messages = _until_complete(ws)
        assert word_error_rate(SAID, _heard(messages)) <= 0.25
        assert any("modelTurn" in m.get("serverContent", {}) for m in messages)
        # What the model read is the user's words.
        assert "Good morning" in engine.prompts[-1]


def test_a_long_silence_setting_waits_and_audio_stream_end_closes(server: RunningServer) -> None:
    setup = {"realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 3000}}}
    with open_session(server, API_KEY, setup) as ws:
        _say(ws, spoken(SAID) + silence(1.0))
        _quiet(ws, 1.5)  # 1 s of silence is not the 3 s asked for
        send(ws, {"realtimeInput": {"audioStreamEnd": True}})
        assert _until_complete(ws)


def test_manual_activity_marks_the_utterance(server: RunningServer, engine: FakeEngine) -> None:
    setup = {
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
        "inputAudioTranscription": {},
    }
    with open_session(server, API_KEY, setup) as ws:
        _say(ws, spoken(SAID) + silence(1.0))
        _quiet(ws, 1.5)  # without activityStart, speech is not a turn
        send(ws, {"realtimeInput": {"activityStart": {}}})
        _say(ws, spoken("Tell me something nice about dogs."))
        send(ws, {"realtimeInput": {"activityEnd": {}}})
        messages = _until_complete(ws)
        assert word_error_rate("Tell me something nice about dogs.", _heard(messages)) <= 0.25
        assert "dogs" in engine.prompts[-1] and "morning" not in engine.prompts[-1]


def test_speaking_over_the_answer_interrupts_it(server: RunningServer, engine: FakeEngine) -> None:
    engine.delay = 0.05
    try:
        with open_session(server, API_KEY, {"generationConfig": {"maxOutputTokens": 400}}) as ws:
            _say(ws, spoken(SAID) + silence(1.0))
            assert "modelTurn" in receive(ws, 30)["serverContent"]
            _say(ws, spoken("Stop please.") + silence(1.0))
            kinds = []
            while "turnComplete" not in kinds:
                kinds += list(receive(ws, 30).get("serverContent", {}))
                if "interrupted" in kinds:
                    engine.delay = 0.002  # the answer to the new words need not be slow
            assert "interrupted" in kinds
            assert "Stop" in engine.prompts[-1]
    finally:
        engine.delay = 0.002


def test_no_interruption_queues_what_was_said(server: RunningServer, engine: FakeEngine) -> None:
    engine.delay = 0.03
    setup = {
        "generationConfig": {"maxOutputTokens": 60},
        "realtimeInputConfig": {"activityHandling": "NO_INTERRUPTION"},
    }
    try:
        with open_session(server, API_KEY, setup) as ws:
            _say(ws, spoken(SAID) + silence(1.0))
            assert "modelTurn" in receive(ws, 30)["serverContent"]
            _say(ws, spoken("Stop please.") + silence(1.0))
            first = _until_complete(ws)
            assert not any("interrupted" in m.get("serverContent", {}) for m in first)
            assert _until_complete(ws)  # the queued utterance is answered next
            assert "Stop" in engine.prompts[-1]
    finally:
        engine.delay = 0.002


def test_an_audio_session_speaks_with_transcription(server: RunningServer) -> None:
    setup = {
        "generationConfig": {"responseModalities": ["AUDIO"], "maxOutputTokens": 6},
        "outputAudioTranscription": {},
    }
    with open_session(server, API_KEY, setup) as ws:
        send(ws, {"realtimeInput": {"text": "Hello"}})
        messages = _until_complete(ws)
    audio = [
        p["inlineData"] for m in messages for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    ]
    said = "".join(
        m["serverContent"]["outputTranscription"]["text"]
        for m in messages
        if "outputTranscription" in m.get("serverContent", {})
    )
    assert audio and {a["mimeType"] for a in audio} == {"audio/pcm;rate=24000"}
    assert said.split() == "alpha beta gamma delta epsilon zeta".split()


def test_resampled_rates_and_one_big_message(server: RunningServer) -> None:
    """Audio at 24 kHz is resampled; a minute of it in one message is taken off the event loop."""
    from localgem.engines.speech.audio import Resampler

    resampler = Resampler(16000, 24000)
    import numpy as np

    pcm = resampler.push(np.frombuffer(silence(55) + spoken(SAID) + silence(1.0), "<i2")) + resampler.flush()
    with open_session(server, API_KEY, {"inputAudioTranscription": {}}) as ws:
        started = time.monotonic()
        send(ws, _audio(pcm, "audio/pcm;rate=24000"))
        messages = _until_complete(ws)
        assert word_error_rate(SAID, _heard(messages)) <= 0.25
        assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (_audio(b"\x01\x02\x03", "audio/pcm;rate=abc"), "sample rate"),
        (_audio(b"\x01\x02", "audio/mpeg"), "16-bit PCM"),
    ],
)
def test_bad_audio_ends_the_session_clearly(server: RunningServer, message: dict, words: str) -> None:
    with open_session(server, API_KEY) as ws:
        send(ws, message)
        code, reason, _ = closed(ws)
    assert code == 1007 and words in reason
