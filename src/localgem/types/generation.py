"""Requests of generateContent, streamGenerateContent and countTokens."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from localgem.types.content import Content
from localgem.types.enums import (
    AspectRatio,
    AudioMimeType,
    Delivery,
    HarmBlockThreshold,
    HarmCategory,
    ImageMimeType,
    ImageSize,
    MediaResolution,
    ResponseModality,
    ServiceTier,
    TextMimeType,
    ThinkingLevel,
    TranscriptionMode,
)
from localgem.types.tools import Schema, Tool, ToolConfig
from localgem.types.wire import Int32, WireModel


class LanguageAuto(WireModel):
    """Detect the audio's language automatically."""


class LanguageHints(WireModel):
    """Languages likely present in the audio."""

    language_codes: list[str] | None = None


class AudioTranscriptionConfig(WireModel):
    """Audio transcription configuration."""

    adaptation_phrases: list[str] | None = None
    custom_vocabulary: list[str] | None = None
    diarization: bool | None = None
    language_auto: LanguageAuto | None = None
    language_codes: list[str] | None = None
    language_hints: LanguageHints | None = None
    mode: TranscriptionMode | None = None
    word_timestamp: bool | None = None


class ImageConfig(WireModel):
    """Image generation options."""

    aspect_ratio: str | None = None
    image_size: str | None = None


class AudioResponseFormat(WireModel):
    """Audio output format."""

    bit_rate: Int32 | None = None
    delivery: Delivery | None = None
    mime_type: AudioMimeType | None = None
    sample_rate: Int32 | None = None


class ImageResponseFormat(WireModel):
    """Image output format."""

    aspect_ratio: AspectRatio | None = None
    delivery: Delivery | None = None
    image_size: ImageSize | None = None
    mime_type: ImageMimeType | None = None


class TextResponseFormat(WireModel):
    """Text output format."""

    mime_type: TextMimeType | None = None
    schema_: Any | None = Field(default=None, alias="schema")


class ResponseFormatConfig(WireModel):
    """Output formats per modality."""

    audio: AudioResponseFormat | None = None
    image: ImageResponseFormat | None = None
    text: TextResponseFormat | None = None


class PrebuiltVoiceConfig(WireModel):
    """A prebuilt voice."""

    voice_name: str | None = None


class VoiceConfig(WireModel):
    """The voice to use."""

    prebuilt_voice_config: PrebuiltVoiceConfig | None = None


class SpeakerVoiceConfig(WireModel):
    """The voice of one speaker."""

    speaker: str | None = None
    voice_config: VoiceConfig | None = None


class MultiSpeakerVoiceConfig(WireModel):
    """Voices of several speakers."""

    speaker_voice_configs: list[SpeakerVoiceConfig] | None = None


class SpeechConfig(WireModel):
    """Speech generation options."""

    language_code: str | None = None
    multi_speaker_voice_config: MultiSpeakerVoiceConfig | None = None
    voice_config: VoiceConfig | None = None


class ThinkingConfig(WireModel):
    """Thinking options."""

    include_thoughts: bool | None = None
    thinking_budget: Int32 | None = None
    thinking_level: ThinkingLevel | None = None


class TranslationConfig(WireModel):
    """Translation options."""

    echo_target_language: bool | None = None
    target_language_code: str | None = None


class GenerationConfig(WireModel):
    """Options for model generation and outputs."""

    audio_transcription_config: AudioTranscriptionConfig | None = None
    candidate_count: Int32 | None = None
    enable_affective_dialog: bool | None = None
    enable_enhanced_civic_answers: bool | None = None
    frequency_penalty: float | None = None
    image_config: ImageConfig | None = None
    logprobs: Int32 | None = None
    max_output_tokens: Int32 | None = None
    media_resolution: MediaResolution | None = None
    presence_penalty: float | None = None
    response_format: ResponseFormatConfig | None = None
    response_json_schema: Any | None = None
    response_logprobs: bool | None = None
    response_mime_type: str | None = None
    response_modalities: list[ResponseModality] | None = None
    response_schema: Schema | None = None
    seed: Int32 | None = None
    speech_config: SpeechConfig | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    thinking_config: ThinkingConfig | None = None
    top_k: Int32 | None = None
    top_p: float | None = None
    translation_config: TranslationConfig | None = None


class SafetySetting(WireModel):
    """A blocking threshold for one harm category."""

    category: HarmCategory | None = None
    threshold: HarmBlockThreshold | None = None


class GenerateContentRequest(WireModel):
    """Body of generateContent and streamGenerateContent."""

    cached_content: str | None = None
    contents: list[Content] | None = None
    continuation_token: str | None = None  # newer than the reference surface; sent by google-genai 3.6
    generation_config: GenerationConfig | None = None
    model: str | None = None
    safety_settings: list[SafetySetting] | None = None
    service_tier: ServiceTier | None = None
    store: bool | None = None
    system_instruction: Content | None = None
    tool_config: ToolConfig | None = None
    tools: list[Tool] | None = None


class CountTokensRequest(WireModel):
    """Body of countTokens: either contents or a whole generateContentRequest."""

    contents: list[Content] | None = None
    generate_content_request: GenerateContentRequest | None = None
