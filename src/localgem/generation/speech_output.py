"""responseModalities AUDIO: what the model writes is spoken (Piper), and the response carries it as
``inlineData`` ``audio/L16;codec=pcm;rate=24000``, as Google's speech models send it.

Models named like Google's TTS models (``*-tts*``) read the request's text aloud instead of answering
it, as those do. ``speechConfig`` picks the voice, or a voice per speaker (``multiSpeakerVoiceConfig``:
lines that start "Name:" are spoken by that speaker's voice)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from localgem import errors
from localgem.speech.speaking import OUTPUT_MIME, Line, Speaking, audio_tokens
from localgem.speech.voices import Voice
from localgem.types.content import Blob, Content, Part
from localgem.types.generation import GenerationConfig
from localgem.types.responses import GenerateContentResponse, ModalityTokenCount

#: A sentence (or line) is complete at its end punctuation followed by a space, or at a newline.
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|\n")
_SPEAKER = re.compile(r"^\s*([^:\n]{1,60}?)\s*:\s*")
_CLAUSE_WORDS = 5
_RUN_ON_WORDS = 16


@dataclass(frozen=True)
class SpeechPlan:
    voice: Voice
    speakers: dict[str, Voice] = field(default_factory=dict)  # lowercased speaker name → voice
    text_too: bool = False  # TEXT requested beside AUDIO
    read_aloud: str | None = None  # TTS models: the text to speak, nothing is generated

    def talker(self) -> Talker:
        return Talker(self.voice, self.speakers)


class Talker:
    """Text as it streams in → lines ready to speak: whole sentences, each with its speaker's voice."""

    def __init__(self, voice: Voice, speakers: dict[str, Voice]) -> None:
        self._voice = voice
        self._speakers = speakers
        self._pending = ""
        self._line_start = True

    def feed(self, text: str) -> list[Line]:
        self._pending += text
        cut = 0
        for match in _SENTENCE_END.finditer(self._pending):
            cut = match.end()
        if not cut:
            cut = _clause_cut(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._lines(ready)

    def finish(self) -> list[Line]:
        ready, self._pending = self._pending, ""
        return self._lines(ready)

    def _lines(self, text: str) -> list[Line]:
        lines: list[Line] = []
        for piece in re.split(r"(\n)", text):
            if piece == "\n":
                self._line_start = True
                continue
            if self._line_start and self._speakers and (match := _SPEAKER.match(piece)):
                voice = self._speakers.get(match.group(1).lower())
                if voice is not None:
                    self._voice = voice
                    piece = piece[match.end() :]
            if piece.strip():
                self._line_start = False
                lines.append(Line(self._voice, piece.strip()))
        return lines


def _clause_cut(text: str) -> int:
    """Where a long sentence may be spoken before its end: after a comma with a few words before it, or
    after many words without one (so speech starts early even when the model writes run-on text)."""
    words = len(text.split())
    if words >= _CLAUSE_WORDS:
        comma = max(text.rfind(", "), text.rfind("; "))
        if comma > 0 and len(text[:comma].split()) >= _CLAUSE_WORDS:
            return comma + 2
    if words > _RUN_ON_WORDS:
        return text.rstrip().rfind(" ") + 1
    return 0


async def speech_plan(
    config: GenerationConfig | None,
    model: str,
    contents: list[Content] | None,
    speaking: Speaking | None,
    where: str = "generation_config",
) -> SpeechPlan | None:
    """None unless AUDIO output is asked for; every 400 about voices, speakers and languages here."""
    config = config or GenerationConfig()
    modalities = {m for m in (config.response_modalities or []) if m != "MODALITY_UNSPECIFIED"}
    speech = config.speech_config
    if "AUDIO" not in modalities:
        if speech is not None:
            raise errors.invalid_field(
                f"{where}.speech_config", "speechConfig needs AUDIO among generationConfig.responseModalities."
            )
        return None
    if speaking is None or not speaking.available:
        raise errors.invalid_field(
            f"{where}.response_modalities",
            "AUDIO output needs a voice and Piper (pip install 'localgem[speech]'); this server has none.",
        )
    voice = speaking.voice(None, f"{where}.speech_config")
    speakers: dict[str, Voice] = {}
    if speech is not None:
        if speech.voice_config is not None and speech.multi_speaker_voice_config is not None:
            raise errors.invalid_field(
                f"{where}.speech_config", "Set either voiceConfig or multiSpeakerVoiceConfig, not both."
            )
        if speech.voice_config is not None:
            voice = _voice(speaking, speech.voice_config, f"{where}.speech_config.voice_config")
        if speech.multi_speaker_voice_config is not None:
            speakers = _speakers(speaking, speech.multi_speaker_voice_config, f"{where}.speech_config")
            voice = next(iter(speakers.values()))
        await speaking.check_language(
            speech.language_code, [voice, *speakers.values()], f"{where}.speech_config.language_code"
        )
    read_aloud = None
    if "tts" in model.lower():
        read_aloud = "\n".join(p.text for p in ((contents or [None])[-1] or Content()).parts or [] if p.text)
        if not read_aloud.strip():
            raise errors.invalid_field("contents", f"{model} reads text aloud; the last content has no text.")
    return SpeechPlan(voice, speakers, "TEXT" in modalities and read_aloud is None, read_aloud)


def _voice(speaking: Speaking, config, where: str) -> Voice:
    prebuilt = config.prebuilt_voice_config
    return speaking.voice(prebuilt.voice_name if prebuilt else None, f"{where}.prebuilt_voice_config.voice_name")


def _speakers(speaking: Speaking, config, where: str) -> dict[str, Voice]:
    speakers: dict[str, Voice] = {}
    for i, speaker in enumerate(config.speaker_voice_configs or []):
        here = f"{where}.multi_speaker_voice_config.speaker_voice_configs[{i}]"
        if not speaker.speaker or not speaker.speaker.strip():
            raise errors.invalid_field(f"{here}.speaker", f"{here}.speaker is required.")
        if speaker.speaker.lower() in speakers:
            raise errors.invalid_field(f"{here}.speaker", f"Speaker {speaker.speaker!r} is given twice.")
        if speaker.voice_config is None:
            raise errors.invalid_field(f"{here}.voice_config", f"{here}.voice_config is required.")
        speakers[speaker.speaker.strip().lower()] = _voice(speaking, speaker.voice_config, f"{here}.voice_config")
    if not speakers:
        raise errors.invalid_field(
            f"{where}.multi_speaker_voice_config", "multiSpeakerVoiceConfig needs at least one speaker."
        )
    return speakers


def audio_part(pcm: bytes) -> Part:
    return Part(inline_data=Blob(data=pcm, mime_type=OUTPUT_MIME))


async def speak_all(speaking: Speaking, lines: list[Line]) -> bytes:
    return b"".join([pcm async for pcm in speaking.speak_lines(lines)])


def _text_of(content: Content | None) -> str:
    return "".join(p.text or "" for p in (content.parts if content and content.parts else []) if not p.thought)


def _speaks(content: Content | None) -> bool:
    return not any(p.function_call is not None for p in (content.parts or [])) if content else False


def spoken_usage(response: GenerateContentResponse, plan: SpeechPlan, audio: int) -> None:
    """Output tokens: AUDIO at 32 a second of speech; TEXT (the model's tokens) too when text was asked for."""
    usage = response.usage_metadata
    if usage is None:
        return
    text = usage.candidates_token_count or 0
    details = [ModalityTokenCount(modality="AUDIO", token_count=audio)]
    if plan.text_too:
        details.insert(0, ModalityTokenCount(modality="TEXT", token_count=text))
    usage.candidates_tokens_details = details
    usage.candidates_token_count = sum(d.token_count or 0 for d in details)
    usage.total_token_count = (usage.prompt_token_count or 0) + usage.candidates_token_count


async def spoken_response(
    response: GenerateContentResponse, plan: SpeechPlan, speaking: Speaking
) -> GenerateContentResponse:
    """A whole answer → its speech (and its text, if asked for)."""
    audio = 0
    for candidate in response.candidates or []:
        if not _speaks(candidate.content):
            continue
        text = plan.read_aloud if plan.read_aloud is not None else _text_of(candidate.content)
        talker = plan.talker()
        pcm = await speak_all(speaking, talker.feed(text) + talker.finish())
        audio += audio_tokens(len(pcm))
        parts = [Part(text=text)] if plan.text_too else []
        candidate.content = Content(role="model", parts=[*parts, audio_part(pcm)])
    spoken_usage(response, plan, audio)
    return response


async def spoken_stream(
    chunks: AsyncIterator[GenerateContentResponse], plan: SpeechPlan, speaking: Speaking
) -> AsyncIterator[GenerateContentResponse]:
    """Streamed answers → speech chunks, each sentence as soon as it is complete and synthesized."""
    talkers: dict[int, Talker] = {}
    audio = 0
    async for chunk in chunks:
        last = chunk.usage_metadata is not None and chunk.usage_metadata.candidates_token_count is not None
        for candidate in chunk.candidates or []:
            talker = talkers.setdefault(candidate.index or 0, plan.talker())
            if not _speaks(candidate.content):
                continue
            text = plan.read_aloud if plan.read_aloud is not None else _text_of(candidate.content)
            lines = talker.feed(text) + (talker.finish() if candidate.finish_reason else [])
            parts = [Part(text=text)] if plan.text_too and text else []
            for line in lines:
                async for pcm in speaking.speak(line.text, line.voice):
                    audio += audio_tokens(len(pcm))
                    yield _chunk(chunk, candidate, [*parts, audio_part(pcm)])
                    parts = []  # the text went out with the first audio
            candidate.content = Content(role="model", parts=parts) if parts else None
        chunk.candidates = [c for c in chunk.candidates or [] if c.content is not None or c.finish_reason]
        if last:
            spoken_usage(chunk, plan, audio)
        if chunk.candidates or last:
            yield chunk


def _chunk(template: GenerateContentResponse, candidate, parts: list[Part]) -> GenerateContentResponse:
    """One audio chunk of ``candidate``, with the response's ids; no finish reason, no usage."""
    return template.model_copy(
        update={
            "candidates": [
                candidate.model_copy(
                    update={
                        "content": Content(role="model", parts=parts),
                        "finish_reason": None,
                        "finish_message": None,
                    }
                )
            ],
            "usage_metadata": template.usage_metadata.model_copy(
                update={"candidates_token_count": None, "candidates_tokens_details": None}
            )
            if template.usage_metadata
            else None,
        }
    )
