"""Tuning examples → the token sequences a LoRA trains on: each input rendered through the base model's chat
template exactly as a generateContent request with that one user turn is served (``Prompts.build``), then the
output's tokens and the model's end-of-generation token (where the answer must stop)."""

from __future__ import annotations

from dataclasses import dataclass

from localgem import errors
from localgem.generation.prompts import Prompts
from localgem.models.registry import ModelEntry
from localgem.types.content import Content, Part

EXAMPLES_FIELD = "tuning_task.training_data.examples.examples"


@dataclass(frozen=True)
class TokenizedExample:
    prompt: list[int]
    output: list[int]


async def tokenized(
    prompts: Prompts, project: str, entry: ModelEntry, examples: list[tuple[str, str]], max_tokens: int
) -> list[TokenizedExample]:
    """Every example's tokens; 400 naming the first that is longer than ``max_tokens`` or the model's context."""
    found: list[TokenizedExample] = []
    end: list[int] | None = None
    for i, (text_input, output) in enumerate(examples):
        where = f"{EXAMPLES_FIELD}[{i}]"
        try:
            builder, prompt = await prompts.build(
                project, entry, [Content(role="user", parts=[Part(text=text_input)])], None
            )
        except errors.InvalidArgument:
            raise errors.invalid_field(
                f"{where}.text_input", f"The input of example {i} is longer than the context of {entry.name}."
            ) from None
        engine = builder.loaded.engine
        if end is None:
            end = await engine.tokenize(engine.info.eos_token)
        answer = await engine.tokenize(output) + end
        limit = min(max_tokens, builder.loaded.context_length)
        if len(prompt) + len(answer) > limit:
            raise errors.invalid_field(
                where,
                f"Example {i} is {len(prompt) + len(answer)} tokens (its input through the chat template, and its "
                f"output); the most a tuning example may have is {limit}.",
            )
        found.append(TokenizedExample(prompt, answer))
    return found
