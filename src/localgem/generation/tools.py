"""The tools a request names, and who serves each kind.

Function declarations are the client's tools: the model writes a call and the client runs it (see
``function_calling``). Tools the server runs itself (code execution, file search: later issues) plug
in here: a ``ServerTool`` registered under the ``Tool`` field it serves. A request naming a kind of
tool that nothing serves is refused with a 400 that names the field, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from localgem import errors
from localgem.types.generation import GenerateContentRequest

#: The ``Tool`` fields other than ``function_declarations``: each is served by a ServerTool, or refused.
SERVER_TOOL_FIELDS = (
    "code_execution",
    "computer_use",
    "file_search",
    "google_maps",
    "google_search",
    "google_search_retrieval",
    "mcp_servers",
    "url_context",
)


class ServerTool(Protocol):
    #: The ``Tool`` field this serves, e.g. ``code_execution``.
    field: str

    def check(self, config: Any, where: str) -> None:
        """Raise a 4xx ``errors.ApiError`` if this use of the tool (``config``, at ``where``) is invalid."""
        ...


ServerTools = Mapping[str, ServerTool]


def server_tools(body: GenerateContentRequest, served: ServerTools, prefix: str = "") -> tuple[ServerTool, ...]:
    """The server-side tools a request uses, each checked; a tool nothing serves is refused."""
    used: dict[str, ServerTool] = {}
    for i, tool in enumerate(body.tools or []):
        for field in SERVER_TOOL_FIELDS:
            config = getattr(tool, field)
            if config is None:
                continue
            where = f"{prefix}tools[{i}].{field}"
            handler = served.get(field)
            if handler is None:
                raise errors.not_supported(where)
            handler.check(config, where)
            used[field] = handler
    return tuple(used.values())
