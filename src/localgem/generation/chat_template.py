"""Chat templates: the Jinja templates shipped in GGUF files (Hugging Face conventions)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localgem import errors

#: Used when a model ships no template and its configuration names none: plain, documented turns.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Model: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Model:{% endif %}"
)


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user", "assistant" or "tool", as chat templates expect
    content: str
    #: Hugging Face's tool conventions: an assistant's calls, and the function a "tool" message answers.
    tool_calls: tuple[dict[str, Any], ...] = ()
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = list(self.tool_calls)
        if self.name is not None:
            message["name"] = self.name
        return message


class TemplateError(Exception):
    pass


def _raise(message: str) -> None:
    raise TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    """``tojson`` as Hugging Face renders templates (and llama.cpp, vLLM after it): keys in their order, nothing
    HTML-escaped. Jinja's own sorts keys and escapes ``<>&'``: prompts a model was not trained on."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise
        env.filters["tojson"] = _tojson
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.source = source
        # Hugging Face templates that format tools read a ``tools`` variable and messages' ``tool_calls``.
        self.supports_tools = "tools" in source and "tool_calls" in source
        self.bos_token = bos_token
        self._template = env.from_string(source)
        self._eos_token = eos_token

    def render(self, messages: list[Message], *, add_generation_prompt: bool = True, **extra: Any) -> str:
        try:
            return self._template.render(
                messages=[m.as_dict() for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self._eos_token,
                **extra,
            )
        except TemplateError as exc:
            raise errors.InvalidArgument(f"The model's chat template rejected this conversation: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise errors.Internal(f"The model's chat template failed: {exc}") from exc
