"""Responses of generateContent, streamGenerateContent and countTokens."""

from __future__ import annotations

from typing import Any

from localgem.types.content import Content
from localgem.types.wire import WireModel


class ModalityTokenCount(WireModel):
    """Tokens of one modality."""

    modality: str
    token_count: int


class UsageMetadata(WireModel):
    """Token usage of a request."""

    prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    candidates_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    tool_use_prompt_tokens_details: list[ModalityTokenCount] | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None
    prompt_tokens_details: list[ModalityTokenCount] | None = None
    cache_tokens_details: list[ModalityTokenCount] | None = None
    candidates_tokens_details: list[ModalityTokenCount] | None = None


class LogprobsCandidate(WireModel):
    """A token and its log probability."""

    token: str
    token_id: int
    log_probability: float


class TopCandidates(WireModel):
    """The most likely tokens of one decoding step."""

    candidates: list[LogprobsCandidate]


class LogprobsResult(WireModel):
    """Log probabilities of the chosen and the most likely tokens, per decoding step."""

    top_candidates: list[TopCandidates] | None = None
    chosen_candidates: list[LogprobsCandidate] | None = None
    log_probability_sum: float | None = None


class SafetyRating(WireModel):
    """The probability of harm of one category."""

    category: str
    probability: str
    blocked: bool | None = None


class Candidate(WireModel):
    """One generated answer."""

    content: Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    index: int | None = None
    safety_ratings: list[SafetyRating] | None = None
    token_count: int | None = None
    avg_logprobs: float | None = None
    logprobs_result: LogprobsResult | None = None
    citation_metadata: dict[str, Any] | None = None
    grounding_metadata: dict[str, Any] | None = None
    url_context_metadata: dict[str, Any] | None = None


class PromptFeedback(WireModel):
    """Why a prompt was blocked, if it was."""

    block_reason: str | None = None
    safety_ratings: list[SafetyRating] | None = None


class GenerateContentResponse(WireModel):
    """A whole response, or one chunk of a stream."""

    candidates: list[Candidate] | None = None
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    turn_token: str | None = None  # undocumented; in Google's responses since late 2025 (services.responses)


class ContentTokens(WireModel):
    """The tokens of one Content of a prompt: its parts', and its turn's own (see services.token_counts)."""

    part_tokens: list[int] | None = None
    role_tokens: int | None = None


class CountTokensResponse(WireModel):
    """The token count of a prompt."""

    total_tokens: int
    cached_content_token_count: int | None = None
    prompt_tokens_details: list[ModalityTokenCount] | None = None
    cache_tokens_details: list[ModalityTokenCount] | None = None
    # Newer than the reference surface; seen in Google's responses (js-genai recordings, 2025-10).
    content_tokens: list[ContentTokens] | None = None
    system_instructions_tokens: ContentTokens | None = None
