"""``generateText``: a PaLM TextPrompt run as a one-turn generateContent request (same model, same defaults,
same limits), its candidates' text as TextCompletions."""

from __future__ import annotations

from localgem import errors
from localgem.generation.service import GenerationService
from localgem.legacy.wire import GenerateTextRequest, GenerateTextResponse, TextCompletion
from localgem.types.content import Content, Part
from localgem.types.generation import GenerateContentRequest, GenerationConfig


async def generate_text(
    generation: GenerationService, model: str, body: GenerateTextRequest, *, project: str, timeout: float | None
) -> GenerateTextResponse:
    if body.prompt is None or not body.prompt.text:
        raise errors.invalid_field("prompt.text", "prompt.text is required.")
    request = GenerateContentRequest(
        contents=[Content(role="user", parts=[Part(text=body.prompt.text)])],
        generation_config=GenerationConfig(
            temperature=body.temperature,
            candidate_count=body.candidate_count,
            max_output_tokens=body.max_output_tokens,
            top_p=body.top_p,
            top_k=body.top_k,
            stop_sequences=body.stop_sequences,
        ),
        safety_settings=body.safety_settings,
    )
    plan = await generation.plan(model, request, project=project, timeout=timeout)
    response = await generation.generate(plan)
    completions = [
        TextCompletion(
            output="".join(part.text or "" for part in (c.content.parts or [])) if c.content else "",
            safety_ratings=c.safety_ratings,
        )
        for c in response.candidates or []
    ]
    return GenerateTextResponse(candidates=completions or None)
