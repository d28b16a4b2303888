"""API conversations (Contents, system instruction) → chat messages, refusing what the model cannot read."""

from __future__ import annotations

from localgem import errors
from localgem.prompting.chat_template import Message
from localgem.types.content import Content, Part

_ROLES = {"user": "user", "model": "assistant"}
_DATA_FIELDS = (
    "text",
    "inline_data",
    "file_data",
    "function_call",
    "function_response",
    "executable_code",
    "code_execution_result",
    "tool_call",
    "tool_response",
)
_MEDIA_ANNOTATIONS = (
    "audio_metadata",
    "audio_transcription",
    "document_metadata",
    "speech_metadata",
    "spreadsheet_metadata",
)
_TEXT_MIME_TYPES = ("application/json", "application/xml", "application/x-yaml", "application/javascript")


def to_messages(contents: list[Content] | None, system_instruction: Content | None, prefix: str = "") -> list[Message]:
    """Validate and flatten a conversation; consecutive turns of one role merge into one message."""
    if not contents:
        raise errors.invalid_field(
            f"{prefix}contents", f"* GenerateContentRequest.{prefix}contents: contents is not specified"
        )
    messages: list[Message] = []
    if system_instruction is not None:
        system = _text_of(system_instruction, f"{prefix}system_instruction")
        if system:
            messages.append(Message("system", system))
    for i, content in enumerate(contents):
        where = f"{prefix}contents[{i}]"
        role = content.role or "user"
        if role not in _ROLES:
            raise errors.invalid_field(
                f"{where}.role", f"Please use a valid role: user, model. Got {role!r} at {where}.role."
            )
        text = _text_of(content, where)
        if messages and messages[-1].role == _ROLES[role]:
            # The SDKs' chats keep a streamed answer as one model Content per chunk, so model turns
            # join seamlessly; separate user messages stay separate paragraphs.
            separator = "" if role == "model" else "\n\n"
            messages[-1] = Message(_ROLES[role], messages[-1].content + separator + text)
        else:
            messages.append(Message(_ROLES[role], text))
    return messages


def _text_of(content: Content, where: str) -> str:
    if not content.parts:
        raise errors.invalid_field(
            f"{where}.parts", f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
        )
    return "".join(_part_text(part, f"{where}.parts[{j}]") for j, part in enumerate(content.parts))


def _part_text(part: Part, where: str) -> str:
    kinds = [name for name in _DATA_FIELDS if getattr(part, name) is not None]
    if not kinds:
        raise errors.invalid_field(
            where, f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
        )
    if len(kinds) > 1:
        raise errors.invalid_field(
            where, f"Invalid value at '{where}': oneof field 'data' is already set. Cannot set '{kinds[1]}'"
        )
    if part.video_metadata is not None:
        raise errors.not_supported(f"{where}.video_metadata", "Video input")
    for field in _MEDIA_ANNOTATIONS:
        if getattr(part, field) is not None:
            raise errors.not_supported(f"{where}.{field}")
    kind = kinds[0]
    if kind == "text":
        # Thought summaries of earlier turns are not fed back to the model, as on Google's side.
        return "" if part.thought else (part.text or "")
    if kind == "inline_data":
        return _inline_text(part, where)
    if kind == "file_data":
        raise errors.not_supported(f"{where}.file_data", "fileData parts (the Files API)")
    raise errors.not_supported(f"{where}.{kind}", f"{kind} parts")


def _inline_text(part: Part, where: str) -> str:
    blob = part.inline_data
    assert blob is not None
    mime = (blob.mime_type or "").split(";")[0].strip().lower()
    if not mime:
        raise errors.invalid_field(f"{where}.inline_data.mime_type", f"{where}.inline_data.mime_type is required.")
    if not (mime.startswith("text/") or mime in _TEXT_MIME_TYPES):
        raise errors.invalid_field(
            f"{where}.inline_data",
            f"Unsupported MIME type {mime!r} at {where}.inline_data: this model reads text only "
            "(text/* and JSON/XML/YAML documents).",
        )
    try:
        return (blob.data or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_field(
            f"{where}.inline_data.data", f"{where}.inline_data is declared {mime} but is not UTF-8 text."
        ) from None
