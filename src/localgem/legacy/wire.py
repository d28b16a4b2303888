"""GenerateTextRequest and GenerateTextResponse (PaLM's text service), as on the wire."""

from __future__ import annotations

from typing import Any

from localgem.types.generation import SafetySetting
from localgem.types.responses import SafetyRating
from localgem.types.wire import Int32, WireModel


class TextPrompt(WireModel):
    text: str | None = None


class GenerateTextRequest(WireModel):
    model: str | None = None
    prompt: TextPrompt | None = None
    temperature: float | None = None
    candidate_count: Int32 | None = None
    max_output_tokens: Int32 | None = None
    top_p: float | None = None
    top_k: Int32 | None = None
    safety_settings: list[SafetySetting] | None = None
    stop_sequences: list[str] | None = None


class TextCompletion(WireModel):
    output: str | None = None
    safety_ratings: list[SafetyRating] | None = None
    citation_metadata: dict[str, Any] | None = None


class GenerateTextResponse(WireModel):
    candidates: list[TextCompletion] | None = None
    filters: list[dict[str, Any]] | None = None
    safety_feedback: list[dict[str, Any]] | None = None
