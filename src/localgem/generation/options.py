"""GenerateContentRequest settings → validated generation options.

Every field of the API is either applied, or refused with a 400 that names it: a request never
silently loses a setting it asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from localgem import errors
from localgem.engines.base import UNBOUNDED, JsonLimits, OutputConstraint, SamplingParams
from localgem.generation.structured import output_constraint
from localgem.models.registry import ModelEntry
from localgem.types.enums import GEMINI_HARM_CATEGORIES
from localgem.types.generation import GenerateContentRequest, GenerationConfig

MAX_CANDIDATES = 8
MAX_STOP_SEQUENCES = 5
MAX_LOGPROBS = 20


@dataclass(frozen=True)
class GenerationOptions:
    sampling: SamplingParams
    max_output_tokens: int | None  # as requested (None: not set)
    stop_sequences: tuple[str, ...]
    candidate_count: int
    logprobs: int | None  # None: not requested
    constraint: OutputConstraint | None = None  # structured output
    #: Tokens the output may have (then cut to what the context leaves): as requested, else the server's
    #: default (``default_max_output_tokens``), within the model's output limit.
    output_budget: int = 0


def refuse_unsupported_request(body: GenerateContentRequest, prefix: str = "") -> None:
    """Request-level features that belong to later parts of localgem (tools: see function_calling)."""
    if body.continuation_token:
        raise errors.not_supported(f"{prefix}continuation_token", "Continuing a response (continuationToken)")
    # serviceTier and store are accepted as they are: there is one tier here, and nothing is logged.
    for i, setting in enumerate(body.safety_settings or []):
        where = f"{prefix}safety_settings[{i}]"
        if setting.category is None or setting.threshold is None:
            raise errors.invalid_field(where, f"{where}: a safety setting needs both category and threshold.")
        if setting.category not in GEMINI_HARM_CATEGORIES:
            raise errors.invalid_field(
                f"{where}.category", f"{setting.category} is not supported by generateContent (PaLM-era category)."
            )


def _refuse_unsupported_config(config: GenerationConfig, where: str, model: str) -> None:
    for field in (
        "response_format",
        "audio_transcription_config",
        "translation_config",
    ):
        if getattr(config, field) is not None:
            raise errors.not_supported(f"{where}.{field}")
    for field in ("enable_affective_dialog", "enable_enhanced_civic_answers"):
        if getattr(config, field):
            raise errors.not_supported(f"{where}.{field}")
    for modality in config.response_modalities or []:
        if modality not in ("TEXT", "AUDIO", "IMAGE", "MODALITY_UNSPECIFIED"):
            raise errors.invalid_field(
                f"{where}.response_modalities",
                f"{model} can only produce TEXT, AUDIO and IMAGE; the response modality {modality} is not supported.",
            )
    # thinkingConfig: see generation.thinking.


def _check_range(where: str, value: float | int, low: float, high: float, *, high_inclusive: bool = True) -> None:
    if not math.isfinite(value) or value < low or value > high or (value == high and not high_inclusive):
        closing = "(inclusive)" if high_inclusive else "(exclusive)"
        raise errors.invalid_field(
            where,
            f"Unable to submit request because it has a {where.split('.')[-1]} value of "
            f"{value} but the supported range is from {low} (inclusive) to {high} {closing}.",
        )


def generation_options(
    config: GenerationConfig | None,
    entry: ModelEntry,
    prefix: str = "",
    *,
    json_limits: JsonLimits = UNBOUNDED,
    default_max_output_tokens: int = 0,
) -> GenerationOptions:
    where = f"{prefix}generation_config"
    config = config or GenerationConfig()
    _refuse_unsupported_config(config, where, entry.name)
    defaults = entry.config
    temperature = defaults.temperature if config.temperature is None else config.temperature
    _check_range(f"{where}.temperature", temperature, 0, defaults.max_temperature)
    top_p = defaults.top_p if config.top_p is None else config.top_p
    _check_range(f"{where}.top_p", top_p, 0, 1)
    top_k = defaults.top_k if config.top_k is None else config.top_k
    if top_k < 0:
        raise errors.invalid_field(f"{where}.top_k", f"top_k must not be negative; got {top_k}.")
    for name in ("presence_penalty", "frequency_penalty"):
        if (value := getattr(config, name)) is not None:
            _check_range(f"{where}.{name}", value, -2.0, 2.0, high_inclusive=False)
    candidates = 1 if config.candidate_count is None else config.candidate_count
    _check_range(f"{where}.candidate_count", candidates, 1, MAX_CANDIDATES)
    max_tokens = config.max_output_tokens
    if max_tokens is not None:
        _check_range(f"{where}.max_output_tokens", max_tokens, 1, entry.output_token_limit)
    stops = tuple(config.stop_sequences or ())
    if len(stops) > MAX_STOP_SEQUENCES:
        raise errors.invalid_field(
            f"{where}.stop_sequences", f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed; got {len(stops)}."
        )
    if any(not stop for stop in stops):
        raise errors.invalid_field(f"{where}.stop_sequences", "Stop sequences must not be empty strings.")
    logprobs = _logprobs(config, where)
    sampling = SamplingParams(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=config.seed,
        presence_penalty=config.presence_penalty or 0.0,
        frequency_penalty=config.frequency_penalty or 0.0,
    )
    limit = entry.output_token_limit
    budget = max_tokens or (min(default_max_output_tokens, limit) if default_max_output_tokens else limit)
    constraint = output_constraint(config, where, json_limits, engine=entry.config.engine)
    return GenerationOptions(sampling, max_tokens, stops, candidates, logprobs, constraint, budget)


def _logprobs(config: GenerationConfig, where: str) -> int | None:
    if config.logprobs is not None and not config.response_logprobs:
        raise errors.invalid_field(f"{where}.logprobs", "logprobs is only valid when responseLogprobs is true.")
    if not config.response_logprobs:
        return None
    top = config.logprobs or 0
    _check_range(f"{where}.logprobs", top, 0, MAX_LOGPROBS)
    return top
