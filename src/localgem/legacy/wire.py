"""The PaLM-era text and discuss services and the AQA (generateAnswer) messages, as on the wire.

Enums take names or proto numbers (the GAPIC REST clients of ``google-generativeai`` send numbers:
``$alt=json;enum-encoding=int``); ``SafetySetting`` is generateContent's, whose ``HarmCategory`` keeps the
PaLM categories (``HARM_CATEGORY_DEROGATORY`` = 1 … ``HARM_CATEGORY_DANGEROUS`` = 6)."""

from __future__ import annotations

from typing import Any

from localgem.retrieval.conditions import MetadataFilter
from localgem.types.content import Content
from localgem.types.generation import SafetySetting
from localgem.types.responses import Candidate, SafetyRating
from localgem.types.wire import Int32, WireModel, wire_enum

_ANSWER_STYLES = ["ANSWER_STYLE_UNSPECIFIED", "ABSTRACTIVE", "EXTRACTIVE", "VERBOSE"]
AnswerStyle = wire_enum(
    "google.ai.generativelanguage.v1beta.GenerateAnswerRequest.AnswerStyle",
    _ANSWER_STYLES,
    {v: i for i, v in enumerate(_ANSWER_STYLES)},
)

# Text service (generateText, countTextTokens).


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


class ContentFilter(WireModel):
    """Why a candidate or the prompt was filtered (``reason``: BLOCKED_REASON_UNSPECIFIED, SAFETY, OTHER)."""

    reason: str | None = None
    message: str | None = None


class SafetyFeedback(WireModel):
    rating: SafetyRating | None = None
    setting: SafetySetting | None = None


class GenerateTextResponse(WireModel):
    candidates: list[TextCompletion] | None = None
    filters: list[ContentFilter] | None = None
    safety_feedback: list[SafetyFeedback] | None = None


class CountTextTokensRequest(WireModel):
    model: str | None = None
    prompt: TextPrompt | None = None


class TokenCount(WireModel):
    """CountTextTokensResponse and CountMessageTokensResponse (proto3 JSON: a count of 0 is omitted)."""

    token_count: int | None = None


# Discuss service (generateMessage, countMessageTokens).


class Message(WireModel):
    author: str | None = None
    content: str | None = None
    citation_metadata: dict[str, Any] | None = None


class Example(WireModel):
    input: Message | None = None
    output: Message | None = None


class MessagePrompt(WireModel):
    context: str | None = None
    examples: list[Example] | None = None
    messages: list[Message] | None = None


class GenerateMessageRequest(WireModel):
    model: str | None = None
    prompt: MessagePrompt | None = None
    temperature: float | None = None
    candidate_count: Int32 | None = None
    top_p: float | None = None
    top_k: Int32 | None = None


class GenerateMessageResponse(WireModel):
    candidates: list[Message] | None = None
    messages: list[Message] | None = None
    filters: list[ContentFilter] | None = None


class CountMessageTokensRequest(WireModel):
    model: str | None = None
    prompt: MessagePrompt | None = None


# Generative service: generateAnswer (attributed question answering).


class GroundingPassage(WireModel):
    id: str | None = None
    content: Content | None = None


class GroundingPassages(WireModel):
    passages: list[GroundingPassage] | None = None


class SemanticRetrieverConfig(WireModel):
    source: str | None = None
    query: Content | None = None
    metadata_filters: list[MetadataFilter] | None = None
    max_chunks_count: Int32 | None = None
    minimum_relevance_score: float | None = None


class GenerateAnswerRequest(WireModel):
    model: str | None = None
    contents: list[Content] | None = None
    answer_style: AnswerStyle | None = None
    inline_passages: GroundingPassages | None = None
    semantic_retriever: SemanticRetrieverConfig | None = None
    safety_settings: list[SafetySetting] | None = None
    temperature: float | None = None


class GroundingPassageId(WireModel):
    passage_id: str | None = None
    part_index: int | None = None


class SemanticRetrieverChunk(WireModel):
    source: str | None = None
    chunk: str | None = None


class AttributionSourceId(WireModel):
    grounding_passage: GroundingPassageId | None = None
    semantic_retriever_chunk: SemanticRetrieverChunk | None = None


class GroundingAttribution(WireModel):
    source_id: AttributionSourceId | None = None
    content: Content | None = None


class AnswerCandidate(Candidate):
    """generateContent's Candidate, with the field only generateAnswer fills."""

    grounding_attributions: list[GroundingAttribution] | None = None


class InputFeedback(WireModel):
    block_reason: str | None = None
    safety_ratings: list[SafetyRating] | None = None


class GenerateAnswerResponse(WireModel):
    answer: AnswerCandidate | None = None
    answerable_probability: float | None = None
    input_feedback: InputFeedback | None = None
