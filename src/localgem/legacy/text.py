"""The text service: ``generateText``, a PaLM TextPrompt run as a one-turn generateContent request (same model,
same defaults, same limits: ``candidateCount`` 1–8, up to 5 ``stopSequences``, cut before the stop sequence), its
candidates' text as TextCompletions; and ``countTextTokens``, the prompt's tokens exactly as countTokens counts
that one user turn (the model's own tokenizer and chat template)."""

from __future__ import annotations

from localgem import errors
from localgem.embeddings.service import EmbeddingService
from localgem.generation.service import GenerationService
from localgem.legacy.safety import TEXT_CATEGORIES, check_safety_settings
from localgem.legacy.wire import (
    CountTextTokensRequest,
    GenerateTextRequest,
    GenerateTextResponse,
    TextCompletion,
    TextPrompt,
    TokenCount,
)
from localgem.types.content import Content, Part
from localgem.types.generation import CountTokensRequest, GenerateContentRequest, GenerationConfig


def _prompt_text(prompt: TextPrompt | None) -> str:
    if prompt is None or not prompt.text:
        raise errors.invalid_field("prompt.text", "prompt.text is required.")
    return prompt.text


def _turn(text: str) -> list[Content]:
    return [Content(role="user", parts=[Part(text=text)])]


async def generate_text(
    generation: GenerationService, model: str, body: GenerateTextRequest, *, project: str, timeout: float | None
) -> GenerateTextResponse:
    text = _prompt_text(body.prompt)
    check_safety_settings(body.safety_settings, TEXT_CATEGORIES, "generateText")
    request = GenerateContentRequest(
        contents=_turn(text),
        generation_config=GenerationConfig(
            temperature=body.temperature,
            candidate_count=body.candidate_count,
            max_output_tokens=body.max_output_tokens,
            top_p=body.top_p,
            top_k=body.top_k,
            stop_sequences=body.stop_sequences,
        ),
    )
    plan = await generation.plan(model, request, project=project, timeout=timeout)
    response = await generation.generate(plan)
    completions = [
        TextCompletion(
            output="".join(part.text or "" for part in (c.content.parts or []) if not part.thought)
            if c.content
            else "",
            safety_ratings=c.safety_ratings,
        )
        for c in response.candidates or []
    ]
    return GenerateTextResponse(candidates=completions or None)


async def count_text_tokens(
    generation: GenerationService,
    embeddings: EmbeddingService,
    model: str,
    body: CountTextTokensRequest,
    *,
    project: str,
) -> TokenCount:
    contents = _turn(_prompt_text(body.prompt))
    if embeddings.embeds(model):  # PaLM's embedding models counted text tokens too
        counted = await embeddings.count_tokens(model, contents, project=project)
    else:
        counted = await generation.count_tokens(model, CountTokensRequest(contents=contents), project=project)
    return TokenCount(token_count=counted.total_tokens or None)
