"""The CachedContent resource."""

from __future__ import annotations

from localgem.types.content import Content
from localgem.types.tools import Tool, ToolConfig
from localgem.types.wire import Duration, Timestamp, WireModel


class CachedContentUsageMetadata(WireModel):
    total_token_count: int


class CachedContent(WireModel):
    """As created (contents, systemInstruction, tools, toolConfig and ttl are input only) and as returned."""

    name: str | None = None
    model: str | None = None
    display_name: str | None = None
    contents: list[Content] | None = None
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    ttl: Duration | None = None
    expire_time: Timestamp | None = None
    create_time: Timestamp | None = None
    update_time: Timestamp | None = None
    usage_metadata: CachedContentUsageMetadata | None = None


class ListCachedContentsResponse(WireModel):
    cached_contents: list[CachedContent] | None = None
    next_page_token: str | None = None
