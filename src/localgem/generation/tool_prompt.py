"""Function calling in the prompt and in the output, for models whose chat template has no tool format.

The documented fallback format (the Hermes/Qwen convention many open models were tuned on):

- the system message lists the functions as JSON and asks for calls as
  ``<tool_call>\\n{"name": ..., "args": {...}}\\n</tool_call>`` blocks;
- earlier calls are rendered the same way in model turns, and results as
  ``<tool_response>\\n{"name": ..., "response": {...}}\\n</tool_response>`` in user turns;
- the output constraint (``engines.base.ToolCalls``, built by ``function_calling``) makes every call
  block valid JSON naming an allowed function with arguments that validate against its declared
  schema: from the first token (mode ANY) or from the moment the model writes ``<tool_call>`` (modes
  AUTO and VALIDATED).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
RESPONSE_OPEN = "<tool_response>"
RESPONSE_CLOSE = "</tool_response>"
#: Calls one turn may hold; a model that keeps calling would otherwise run to its token limit.
MAX_CALLS = 8
_CALL_BLOCK = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True)
class ParsedCall:
    name: str
    args: dict[str, Any]


def instructions(functions: list[Function], *, required: bool) -> str:
    listing = json.dumps(
        [{"name": f.name, "description": f.description, "parameters": f.parameters} for f in functions],
        ensure_ascii=False,
    )
    when = (
        "You must answer by calling one or more of these functions."
        if required
        else "Call a function only when it helps to answer; otherwise answer directly."
    )
    return (
        f"You can call these functions:\n{listing}\n"
        f"To call a function, write\n{CALL_OPEN}\n"
        '{"name": "<function name>", "args": {<arguments as JSON>}}\n'
        f"{CALL_CLOSE}\n"
        f"{when} Results come back in {RESPONSE_OPEN} blocks."
    )


def template_tools(functions: list[Function]) -> list[dict[str, Any]]:
    """Declarations as Hugging Face chat templates take them (the ``tools`` variable)."""
    return [
        {"type": "function", "function": {"name": f.name, "description": f.description, "parameters": f.parameters}}
        for f in functions
    ]


def template_call(name: str, args: dict[str, Any] | None, call_id: str | None) -> dict[str, Any]:
    """A call as Hugging Face chat templates take it (an entry of a message's ``tool_calls``)."""
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args or {}}}
    if call_id:
        call["id"] = call_id
    return call


def render_call(name: str, args: dict[str, Any] | None) -> str:
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'args': args or {}}, ensure_ascii=False)}\n{CALL_CLOSE}"


def render_response(name: str, response: dict[str, Any] | None) -> str:
    body = json.dumps({"name": name, "response": response or {}}, ensure_ascii=False)
    return f"{RESPONSE_OPEN}\n{body}\n{RESPONSE_CLOSE}"


def split_calls(text: str) -> tuple[str, list[ParsedCall], bool]:
    """Model output → (the text before any call, the distinct calls, whether a call was cut off or malformed)."""
    start = text.find(CALL_OPEN)
    if start < 0:
        return text, [], False
    before = text[:start]
    calls = []
    end = start
    for match in _CALL_BLOCK.finditer(text, start):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            return before, calls, True
        args = data.get("args", data.get("arguments", {})) if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(args, dict):
            return before, calls, True
        call = ParsedCall(data["name"], args)
        if call not in calls:  # small models repeat a call verbatim; running it twice helps nobody
            calls.append(call)
        end = match.end()
    malformed = not calls or bool(text[end:].strip())
    return before, calls, malformed


def held_back(text: str) -> int:
    """How many trailing characters of streamed ``text`` might be the start of a call block."""
    for size in range(min(len(CALL_OPEN), len(text)), 0, -1):
        if CALL_OPEN.startswith(text[-size:]):
            return size
    return 0
