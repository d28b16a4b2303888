"""Tools, function declarations, schemas and tool configuration."""

from __future__ import annotations

from typing import Any

from localgem.types.enums import (
    Behavior,
    ComputerUseEnvironment,
    DynamicRetrievalMode,
    FunctionCallingMode,
    SafetyPolicy,
    SchemaType,
)
from localgem.types.wire import Duration, Int32, Int64, Timestamp, WireModel


class Schema(WireModel):
    """Google's OpenAPI 3.0 subset used by responseSchema and function parameters."""

    any_of: list[Schema] | None = None
    default: Any | None = None
    description: str | None = None
    enum: list[str] | None = None
    example: Any | None = None
    format: str | None = None
    items: Schema | None = None
    max_items: Int64 | None = None
    max_length: Int64 | None = None
    max_properties: Int64 | None = None
    maximum: float | None = None
    min_items: Int64 | None = None
    min_length: Int64 | None = None
    min_properties: Int64 | None = None
    minimum: float | None = None
    nullable: bool | None = None
    pattern: str | None = None
    properties: dict[str, Schema] | None = None
    property_ordering: list[str] | None = None
    required: list[str] | None = None
    title: str | None = None
    type: SchemaType | None = None


class FunctionDeclaration(WireModel):
    """A function the model may call."""

    behavior: Behavior | None = None
    description: str | None = None
    name: str | None = None
    parameters: Schema | None = None
    parameters_json_schema: Any | None = None
    response: Schema | None = None
    response_json_schema: Any | None = None


class CodeExecution(WireModel):
    """Lets the model write and run code."""


class ComputerUse(WireModel):
    """Computer Use tool."""

    disabled_safety_policies: list[SafetyPolicy] | None = None
    enable_prompt_injection_detection: bool | None = None
    environment: ComputerUseEnvironment | None = None
    excluded_predefined_functions: list[str] | None = None


class FileSearch(WireModel):
    """Retrieval from File Search stores."""

    file_search_store_names: list[str] | None = None
    metadata_filter: str | None = None
    top_k: Int32 | None = None


class GoogleMaps(WireModel):
    """Geospatial context from Google Maps."""

    enable_widget: bool | None = None


class Interval(WireModel):
    """A time interval."""

    end_time: Timestamp | None = None
    start_time: Timestamp | None = None


class ImageSearch(WireModel):
    """Image search for grounding."""


class WebSearch(WireModel):
    """Web search for grounding."""


class SearchTypes(WireModel):
    """Kinds of search the GoogleSearch tool may run."""

    image_search: ImageSearch | None = None
    web_search: WebSearch | None = None


class GoogleSearch(WireModel):
    """Grounding with Google Search."""

    search_types: SearchTypes | None = None
    time_range_filter: Interval | None = None


class DynamicRetrievalConfig(WireModel):
    """Options for dynamic retrieval."""

    dynamic_threshold: float | None = None
    mode: DynamicRetrievalMode | None = None


class GoogleSearchRetrieval(WireModel):
    """Legacy search grounding tool."""

    dynamic_retrieval_config: DynamicRetrievalConfig | None = None


class StreamableHttpTransport(WireModel):
    """An MCP server reached over streamable HTTP."""

    headers: dict[str, Any] | None = None
    sse_read_timeout: Duration | None = None
    terminate_on_close: bool | None = None
    timeout: Duration | None = None
    url: str | None = None


class McpServer(WireModel):
    """An MCP server the model may call."""

    name: str | None = None
    streamable_http_transport: StreamableHttpTransport | None = None


class UrlContext(WireModel):
    """URL context retrieval."""


class Tool(WireModel):
    """Tools the model may use."""

    code_execution: CodeExecution | None = None
    computer_use: ComputerUse | None = None
    file_search: FileSearch | None = None
    function_declarations: list[FunctionDeclaration] | None = None
    google_maps: GoogleMaps | None = None
    google_search: GoogleSearch | None = None
    google_search_retrieval: GoogleSearchRetrieval | None = None
    mcp_servers: list[McpServer] | None = None
    url_context: UrlContext | None = None


class FunctionCallingConfig(WireModel):
    """How the model may call functions."""

    allowed_function_names: list[str] | None = None
    mode: FunctionCallingMode | None = None


class LatLng(WireModel):
    """A latitude/longitude pair."""

    latitude: float | None = None
    longitude: float | None = None


class RetrievalConfig(WireModel):
    """Retrieval config."""

    language_code: str | None = None
    lat_lng: LatLng | None = None


class ToolConfig(WireModel):
    """Configuration of tool use for a request."""

    function_calling_config: FunctionCallingConfig | None = None
    include_server_side_tool_invocations: bool | None = None
    retrieval_config: RetrievalConfig | None = None
