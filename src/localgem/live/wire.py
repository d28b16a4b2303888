"""The Live API's messages (BidiGenerateContent): what clients send, and the server messages we build.

Client messages arrive camelCase (JS) or snake_case (Python, with mixed nested casing); ``WireModel``
takes both at any depth. Server messages go out camelCase: the Python SDK reads no other casing.
"""

from __future__ import annotations

from typing import Any

from localgem import errors
from localgem.types.content import Blob, Content, FunctionCall, FunctionResponse
from localgem.types.generation import AudioTranscriptionConfig, GenerationConfig, SafetySetting
from localgem.types.tools import Tool, ToolConfig
from localgem.types.wire import Int32, Int64, Timestamp, WireModel, parse_message, wire_enum

_SENSITIVITY_START = ["START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"]
_SENSITIVITY_END = ["END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"]
_ACTIVITY_HANDLING = ["ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"]
_TURN_COVERAGE = ["TURN_COVERAGE_UNSPECIFIED", "TURN_INCLUDES_ONLY_ACTIVITY", "TURN_INCLUDES_ALL_INPUT"]


def _numbered(values: list[str]) -> dict[str, int]:
    return {value: number for number, value in enumerate(values)}


StartSensitivity = wire_enum("StartSensitivity", _SENSITIVITY_START, _numbered(_SENSITIVITY_START))
EndSensitivity = wire_enum("EndSensitivity", _SENSITIVITY_END, _numbered(_SENSITIVITY_END))
ActivityHandling = wire_enum("ActivityHandling", _ACTIVITY_HANDLING, _numbered(_ACTIVITY_HANDLING))
TurnCoverage = wire_enum("TurnCoverage", _TURN_COVERAGE, _numbered(_TURN_COVERAGE))


class AutomaticActivityDetection(WireModel):
    disabled: bool | None = None
    start_of_speech_sensitivity: StartSensitivity | None = None
    end_of_speech_sensitivity: EndSensitivity | None = None
    prefix_padding_ms: Int32 | None = None
    silence_duration_ms: Int32 | None = None


class RealtimeInputConfig(WireModel):
    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: ActivityHandling | None = None
    turn_coverage: TurnCoverage | None = None


class SessionResumptionConfig(WireModel):
    handle: str | None = None
    #: Vertex AI only; accepted and ignored, as the Gemini API does.
    transparent: bool | None = None


class SlidingWindow(WireModel):
    target_tokens: Int64 | None = None


class ContextWindowCompression(WireModel):
    trigger_tokens: Int64 | None = None
    sliding_window: SlidingWindow | None = None


class HistoryConfig(WireModel):
    initial_history_in_client_content: bool | None = None


class ProactivityConfig(WireModel):
    proactive_audio: bool | None = None


class LiveSetup(WireModel):
    """BidiGenerateContentSetup: the first message of a session."""

    model: str | None = None
    generation_config: GenerationConfig | None = None
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    safety_settings: list[SafetySetting] | None = None
    realtime_input_config: RealtimeInputConfig | None = None
    session_resumption: SessionResumptionConfig | None = None
    context_window_compression: ContextWindowCompression | None = None
    input_audio_transcription: AudioTranscriptionConfig | None = None
    output_audio_transcription: AudioTranscriptionConfig | None = None
    history_config: HistoryConfig | None = None
    proactivity: ProactivityConfig | None = None
    explicit_vad_signal: bool | None = None
    #: Known to the SDKs; refused with a clear reason when set (see ``session.check_setup``).
    translation_config: dict[str, Any] | None = None
    avatar_config: dict[str, Any] | None = None


class ClientContent(WireModel):
    turns: list[Content] | None = None
    turn_complete: bool | None = None


class ActivityMarker(WireModel):
    pass


class RealtimeInput(WireModel):
    media_chunks: list[Blob] | None = None
    audio: Blob | None = None
    video: Blob | None = None
    text: str | None = None
    audio_stream_end: bool | None = None
    activity_start: ActivityMarker | None = None
    activity_end: ActivityMarker | None = None


class ToolResponse(WireModel):
    function_responses: list[FunctionResponse] | None = None


ClientMessage = LiveSetup | ClientContent | RealtimeInput | ToolResponse

_KINDS: dict[str, type[WireModel]] = {
    "setup": LiveSetup,
    "clientContent": ClientContent,
    "client_content": ClientContent,
    "realtimeInput": RealtimeInput,
    "realtime_input": RealtimeInput,
    "toolResponse": ToolResponse,
    "tool_response": ToolResponse,
}


def client_message(data: Any) -> ClientMessage:
    """A decoded frame → the one message it holds; Google's error for anything else."""
    if not isinstance(data, dict):
        raise errors.InvalidArgument("Invalid JSON payload received. A Live API message is a JSON object.")
    if len(data) != 1:
        names = ", ".join(sorted(data)) or "none"
        raise errors.InvalidArgument(
            "A Live API message holds exactly one of setup, clientContent, realtimeInput, toolResponse "
            f"(it held: {names})."
        )
    ((key, value),) = data.items()
    kind = _KINDS.get(key)
    if kind is None:
        raise errors.InvalidArgument(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    if value is None:
        value = {}
    return parse_message(kind, value)


# Server messages ------------------------------------------------------------------------------------


class ModalityTokens(WireModel):
    modality: str
    token_count: int


class LiveUsage(WireModel):
    """Live UsageMetadata: sent with each turn's completion, as Google does."""

    prompt_token_count: int
    cached_content_token_count: int | None = None
    response_token_count: int
    total_token_count: int
    prompt_tokens_details: list[ModalityTokens]
    cache_tokens_details: list[ModalityTokens] | None = None
    response_tokens_details: list[ModalityTokens]


def usage(prompt: int, response: int, cached: int = 0) -> LiveUsage:
    return LiveUsage(
        prompt_token_count=prompt,
        cached_content_token_count=cached or None,
        response_token_count=response,
        total_token_count=prompt + response,
        prompt_tokens_details=[ModalityTokens(modality="TEXT", token_count=prompt)],
        cache_tokens_details=[ModalityTokens(modality="TEXT", token_count=cached)] if cached else None,
        response_tokens_details=[ModalityTokens(modality="TEXT", token_count=response)],
    )


def setup_complete() -> dict[str, Any]:
    return {"setupComplete": {}}


def model_turn(content: Content) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": content.to_wire()}}


def input_transcription(text: str) -> dict[str, Any]:
    return {"serverContent": {"inputTranscription": {"text": text}}}


def output_transcription(text: str) -> dict[str, Any]:
    return {"serverContent": {"outputTranscription": {"text": text}}}


def grounding(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a retrieval tool (fileSearch) grounded the turn's answer in."""
    return {"serverContent": {"groundingMetadata": metadata}}


def generation_complete() -> dict[str, Any]:
    return {"serverContent": {"generationComplete": True}}


def turn_complete(used: LiveUsage | None) -> dict[str, Any]:
    message: dict[str, Any] = {"serverContent": {"turnComplete": True}}
    if used is not None:
        message["usageMetadata"] = used.to_wire()
    return message


def interrupted() -> dict[str, Any]:
    return {"serverContent": {"interrupted": True}}


def tool_call(calls: list[FunctionCall]) -> dict[str, Any]:
    return {"toolCall": {"functionCalls": [call.to_wire() for call in calls]}}


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    return {"toolCallCancellation": {"ids": ids}}


def go_away(seconds: float) -> dict[str, Any]:
    return {"goAway": {"timeLeft": f"{max(seconds, 0.0):.3f}".rstrip("0").rstrip(".") + "s"}}


def resumption_update(handle: str | None) -> dict[str, Any]:
    if handle is None:
        return {"sessionResumptionUpdate": {"resumable": False}}
    return {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}


class AuthToken(WireModel):
    """An ephemeral token (``auth_tokens.create``): the name is the secret a Live client presents."""

    name: str | None = None
    uses: Int32 | None = None
    expire_time: Timestamp | None = None
    new_session_expire_time: Timestamp | None = None
    bidi_generate_content_setup: LiveSetup | None = None
    field_mask: str | None = None
