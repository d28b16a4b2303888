"""API conversations (Contents, system instruction) → chat messages, refusing what the model cannot read."""

from __future__ import annotations

import json

from localgem import errors
from localgem.files.documents import base_type, document_text
from localgem.generation import tool_prompt as tools
from localgem.generation.chat_template import Message
from localgem.generation.code_blocks import history_text
from localgem.types.content import Content, Part

_ROLES = {"user": "user", "model": "assistant", "function": "user"}  # "function": function results, older docs
DATA_FIELDS = (
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


def to_messages(
    contents: list[Content] | None,
    system_instruction: Content | None,
    prefix: str = "",
    tool_prompt: str | None = None,
    template_tools: bool = False,
) -> list[Message]:
    """Validate and flatten a conversation; consecutive turns of one role merge into one message.

    ``tool_prompt`` (the fallback format's list of functions) joins the system message. With
    ``template_tools`` the model's chat template formats tools: calls go into an assistant message's
    ``tool_calls`` and results into ``tool`` messages, as Hugging Face templates expect; otherwise
    both are rendered as text blocks (see prompting.tools)."""
    if not contents:
        raise errors.invalid_field(
            f"{prefix}contents", f"* GenerateContentRequest.{prefix}contents: contents is not specified"
        )
    messages: list[Message] = []
    if system_instruction is not None:
        system = content_text(system_instruction, f"{prefix}system_instruction")
        if system:
            messages.append(Message("system", system))
    if tool_prompt:
        if messages:
            messages[0] = Message("system", messages[0].content + "\n\n" + tool_prompt)
        else:
            messages.append(Message("system", tool_prompt))
    for i, content in enumerate(contents):
        where = f"{prefix}contents[{i}]"
        role = content.role or "user"
        if role not in _ROLES:
            raise errors.invalid_field(
                f"{where}.role", f"Please use a valid role: user, model. Got {role!r} at {where}.role."
            )
        for message in _turn(content, role, where, template_tools):
            last = messages[-1] if messages else None
            if last is not None and last.role == message.role and message.role != "tool":
                # The SDKs' chats keep a streamed answer as one model Content per chunk, so model turns
                # join seamlessly; separate user messages stay separate paragraphs.
                separator = "" if role == "model" else "\n\n"
                messages[-1] = Message(
                    message.role, last.content + separator + message.content, last.tool_calls + message.tool_calls
                )
            else:
                messages.append(message)
    return messages


def content_text(content: Content, where: str) -> str:
    """The text of one Content's parts, as a model reads it."""
    return _turn(content, "user", where, template_tools=False)[0].content


def _turn(content: Content, role: str, where: str, template_tools: bool) -> list[Message]:
    if not content.parts:
        raise errors.invalid_field(
            f"{where}.parts", f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
        )
    text: list[str] = []
    calls: list[dict] = []
    results: list[Message] = []
    for j, part in enumerate(content.parts):
        here = f"{where}.parts[{j}]"
        kind = _kind(part, here)
        if kind == "function_call":
            call = part.function_call
            assert call is not None
            if not call.name:
                raise errors.invalid_field(f"{here}.function_call.name", f"{here}.function_call.name is required.")
            if template_tools:
                calls.append(tools.template_call(call.name, call.args, call.id))
            else:
                text.append(tools.render_call(call.name, call.args) + "\n")
        elif kind == "function_response":
            result = part.function_response
            assert result is not None
            if not result.name:
                raise errors.invalid_field(
                    f"{here}.function_response.name", f"{here}.function_response.name is required."
                )
            if result.parts:
                raise errors.not_supported(f"{here}.function_response.parts", "Media in function responses")
            if template_tools:
                results.append(Message("tool", json.dumps(result.response or {}, ensure_ascii=False), name=result.name))
            else:
                text.append(tools.render_response(result.name, result.response) + "\n")
        else:
            text.append(_part_text(part, kind, here))
    turn = [Message(_ROLES[role], "".join(text), tuple(calls))] if text or calls or not results else []
    return turn + results


def _kind(part: Part, where: str) -> str:
    kinds = [name for name in DATA_FIELDS if getattr(part, name) is not None]
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
    return kinds[0]


def _part_text(part: Part, kind: str, where: str) -> str:
    if kind == "text":
        # Thought summaries of earlier turns are not fed back to the model, as on Google's side.
        return "" if part.thought else (part.text or "")
    if kind == "inline_data":
        return _inline_text(part, where)
    if kind == "file_data":
        raise errors.not_supported(f"{where}.file_data", "fileData parts outside contents")
    if (code := history_text(part)) is not None:
        return code
    raise errors.not_supported(f"{where}.{kind}", f"{kind} parts")


def _inline_text(part: Part, where: str) -> str:
    blob = part.inline_data
    assert blob is not None
    if not base_type(blob.mime_type):
        raise errors.invalid_field(f"{where}.inline_data.mime_type", f"{where}.inline_data.mime_type is required.")
    return document_text(blob.data or b"", blob.mime_type or "", f"{where}.inline_data")
