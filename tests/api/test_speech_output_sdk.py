"""Speech output through the real google-genai SDK: responseModalities AUDIO with speechConfig, spoken by
the packaged Piper voice, checked by transcribing what it said with the packaged Whisper."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.server import RunningServer
from tests.speech import transcript, word_error_rate

TTS = "gemini-2.5-flash-preview-tts"
MODEL = "gemini-2.5-flash"
PCM_24K = "audio/L16;codec=pcm;rate=24000"
LINE = "The library opens at nine in the morning and closes at six in the evening."


def _voice(name: str) -> types.SpeechConfig:
    return types.SpeechConfig(
        voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=name))
    )


def _audio(response) -> bytes:
    parts = response.candidates[0].content.parts
    blobs = [p.inline_data for p in parts if p.inline_data is not None]
    assert [b.mime_type for b in blobs] == [PCM_24K]
    return blobs[0].data


@pytest.mark.parametrize("voice", ["Kore", "Puck", "joe"])
def test_a_tts_model_reads_the_text_aloud(client: genai.Client, real_server: RunningServer, voice: str) -> None:
    response = client.models.generate_content(
        model=TTS,
        contents=LINE,
        config=types.GenerateContentConfig(response_modalities=["AUDIO"], speech_config=_voice(voice)),
    )
    pcm = _audio(response)
    seconds = len(pcm) / 2 / 24000
    assert len(pcm) % 2 == 0 and 2.5 < seconds < 9, seconds
    assert word_error_rate(LINE, transcript(real_server, pcm)) <= 0.2
    usage = response.usage_metadata
    assert [(d.modality.value, d.token_count) for d in usage.candidates_tokens_details] == [
        ("AUDIO", round(seconds * 32))
    ]
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_voices_that_share_a_model_sound_apart(client: genai.Client) -> None:
    def spoken(voice: str) -> bytes:
        config = types.GenerateContentConfig(response_modalities=["AUDIO"], speech_config=_voice(voice))
        return _audio(client.models.generate_content(model=TTS, contents=LINE, config=config))

    # Two takes of each: Piper's synthesis draws random noise, and one take's median pitch varies by a few per cent
    # (Puck ÷ Kore measured 0.86-0.94 over 8 single takes, once 0.97).
    kore, puck, zephyr = (spoken(voice) + spoken(voice) for voice in ("Kore", "Puck", "Zephyr"))
    # Puck and Zephyr are Kore's model at pitches 0.88 and 1.15: about the same length, the voice's
    # fundamental frequency lower and higher by about that much.
    assert abs(len(kore) - len(puck)) / len(kore) < 0.25 and abs(len(kore) - len(zephyr)) / len(kore) < 0.25
    assert 0.8 < _pitch(puck) / _pitch(kore) < 0.95
    assert 1.07 < _pitch(zephyr) / _pitch(kore) < 1.25


def _pitch(pcm: bytes) -> float:
    """The median fundamental frequency (Hz) of the voiced 40 ms frames, by autocorrelation."""
    import numpy as np

    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    size, found = 960, []
    for at in range(0, len(samples) - size, size):
        frame = samples[at : at + size] - samples[at : at + size].mean()
        if np.sqrt(np.mean(frame**2)) < 1000:
            continue  # silence or a breath
        corr = np.correlate(frame, frame, "full")[size - 1 :]
        low, high = 24000 // 400, 24000 // 60  # 60 to 400 Hz
        lag = low + int(np.argmax(corr[low:high]))
        if corr[lag] > 0.4 * corr[0]:
            found.append(24000 / lag)
    assert len(found) > 20
    return float(np.median(found))


def test_multi_speaker_dialogue_streams_each_line(client: genai.Client, real_server: RunningServer) -> None:
    dialogue = "Joe: Where is the station?\nJane: It is just around the corner."
    config = types.GenerateContentConfig(
        response_modalities=["AUDIO"],
        speech_config=types.SpeechConfig(
            multi_speaker_voice_config=types.MultiSpeakerVoiceConfig(
                speaker_voice_configs=[
                    types.SpeakerVoiceConfig(
                        speaker="Joe",
                        voice_config=types.VoiceConfig(
                            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore")
                        ),
                    ),
                    types.SpeakerVoiceConfig(
                        speaker="Jane",
                        voice_config=types.VoiceConfig(
                            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Zephyr")
                        ),
                    ),
                ]
            )
        ),
    )
    chunks = list(client.models.generate_content_stream(model=TTS, contents=dialogue, config=config))
    audio = [
        p.inline_data
        for c in chunks
        for cand in c.candidates or []
        for p in (cand.content.parts if cand.content else [])
    ]
    assert len(audio) >= 2 and all(b.mime_type == PCM_24K for b in audio)
    assert chunks[-1].candidates[0].finish_reason.name == "STOP"
    heard = transcript(real_server, b"".join(b.data for b in audio))
    # The speaker names are not read out; both lines are.
    assert word_error_rate("Where is the station? It is just around the corner.", heard) <= 0.25
    assert "jane" not in heard.lower()
    unary = client.models.generate_content(model=TTS, contents=dialogue, config=config)
    assert abs(len(_audio(unary)) - sum(len(b.data) for b in audio)) / len(_audio(unary)) < 0.2


def test_a_model_answers_aloud_with_its_text(client: genai.Client, real_server: RunningServer) -> None:
    config = types.GenerateContentConfig(response_modalities=["TEXT", "AUDIO"], max_output_tokens=30, temperature=0)
    response = client.models.generate_content(model=MODEL, contents="Say hello to Anna.", config=config)
    parts = response.candidates[0].content.parts
    text = parts[0].text
    assert text and parts[1].inline_data.mime_type == PCM_24K
    assert word_error_rate(text, transcript(real_server, parts[1].inline_data.data)) <= 0.35
    # Streamed, the audio comes sentence by sentence, the text beside it.
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello to Anna.", config=config))
    streamed = "".join(
        p.text or ""
        for c in chunks
        for cand in c.candidates or []
        for p in (cand.content.parts if cand.content else [])
    )
    assert streamed == text
    audio_only = client.models.generate_content(
        model=MODEL,
        contents="Say hello to Anna.",
        config=types.GenerateContentConfig(response_modalities=["AUDIO"], max_output_tokens=30, temperature=0),
    )
    assert [p.text for p in audio_only.candidates[0].content.parts] == [None]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (types.GenerateContentConfig(response_modalities=["AUDIO"], speech_config=_voice("Bob")), "Kore, Fenrir"),
        (types.GenerateContentConfig(speech_config=_voice("Kore")), "responseModalities"),
        (types.GenerateContentConfig(response_modalities=["IMAGE"]), "IMAGE"),
        (
            types.GenerateContentConfig(
                response_modalities=["AUDIO"], speech_config=types.SpeechConfig(language_code="de-DE")
            ),
            "de-DE",
        ),
        (
            types.GenerateContentConfig(
                response_modalities=["AUDIO"],
                speech_config=types.SpeechConfig(
                    voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore")),
                    multi_speaker_voice_config=types.MultiSpeakerVoiceConfig(speaker_voice_configs=[]),
                ),
            ),
            "not both",
        ),
    ],
)
def test_speech_settings_are_checked(client: genai.Client, config, words: str) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=TTS, contents="Hello.", config=config)
    assert caught.value.code == 400 and words in caught.value.message


def test_language_code_of_the_voice_is_accepted(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_modalities=["AUDIO"], speech_config=types.SpeechConfig(language_code="en-US")
    )
    assert _audio(client.models.generate_content(model=TTS, contents="Hello.", config=config))
