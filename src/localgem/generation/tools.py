"""The tools a request names, and who serves each kind.

Function declarations are the client's tools: the model writes a call and the client runs it (see
``function_calling``). Tools the server runs itself plug in here: a ``ServerTool`` registered under the
``Tool`` field it serves; one that retrieves before the model answers (file search) is a ``GroundingTool``,
and what it finds rides on the answer as ``groundingMetadata``. A request naming a kind of
tool that nothing serves is refused with a 400 that names the field, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from localgem import errors
from localgem.retrieval.grounding import supports
from localgem.types.content import Content
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


@dataclass(frozen=True)
class Grounding:
    """What a retrieval tool found for a request: text the model reads before the conversation, and the
    sources to cite in each candidate's ``groundingMetadata``."""

    context: str  # empty: nothing found
    chunks: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # groundingChunks, as on the wire
    passages: list[str] = dataclasses.field(default_factory=list)  # each chunk's text, to match answers against
    queries: list[str] = dataclasses.field(default_factory=list)

    def metadata(self, answer: str) -> dict[str, Any]:
        """``groundingMetadata`` for an answer: the chunks, and which answer sentences each supports."""
        found: dict[str, Any] = {"groundingChunks": self.chunks} if self.chunks else {}
        cited = supports(answer, self.passages)
        if cited:
            found["groundingSupports"] = [
                {
                    "segment": _segment(s.start, s.end, s.text),
                    "groundingChunkIndices": list(s.chunk_indices),
                    "confidenceScores": list(s.confidences),
                }
                for s in cited
            ]
        if self.queries:
            found["retrievalQueries"] = self.queries
        return found


def _segment(start: int, end: int, text: str) -> dict[str, Any]:
    segment: dict[str, Any] = {"endIndex": end, "text": text}
    if start:
        segment["startIndex"] = start  # proto3 JSON leaves zeros out
    return segment


class GroundingTool(ServerTool, Protocol):
    """A server tool that retrieves before the model answers (file search)."""

    async def ground(self, project: str, config: Any, contents: Sequence[Content], where: str) -> Grounding: ...


ServerTools = Mapping[str, ServerTool]


async def ground(body: GenerateContentRequest, served: ServerTools, project: str, prefix: str = "") -> Grounding | None:
    """What the request's retrieval tools found (None: it uses none), all of it in one Grounding."""
    found: list[Grounding] = []
    for i, tool in enumerate(body.tools or []):
        for name in SERVER_TOOL_FIELDS:
            config = getattr(tool, name)
            handler = served.get(name)
            if config is not None and handler is not None and hasattr(handler, "ground"):
                found.append(await handler.ground(project, config, body.contents or [], f"{prefix}tools[{i}].{name}"))
    if not found:
        return None
    return Grounding(
        context="\n\n".join(g.context for g in found if g.context),
        chunks=[c for g in found for c in g.chunks],
        passages=[p for g in found for p in g.passages],
        queries=[q for g in found for q in g.queries],
    )


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
