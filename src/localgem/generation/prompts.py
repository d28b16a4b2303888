"""A request's contents, system instruction and tools → prompt tokens, within the model's input limit.

Shared by generation (every request) and caching (what a cached content holds), so that a cache and
the requests that use it count the same prompt."""

from __future__ import annotations

from localgem import errors
from localgem.generation.function_calling import ToolPlan, tool_plan
from localgem.generation.loaded import EnginePool
from localgem.generation.media import MediaReader
from localgem.generation.prompt_builder import PromptBuilder
from localgem.models.registry import ModelEntry
from localgem.types.content import Content
from localgem.types.generation import GenerateContentRequest


class Prompts:
    def __init__(self, engines: EnginePool, media: MediaReader | None = None) -> None:
        self._engines = engines
        self._media = media or MediaReader()

    async def build(
        self,
        project: str,
        entry: ModelEntry,
        contents: list[Content] | None,
        system: Content | None,
        prefix: str = "",
        plan: ToolPlan | None = None,
    ) -> tuple[PromptBuilder, list[int]]:
        """The prompt, and the builder that made it (its model, and how each piece renders)."""
        media: list = []
        loaded = await self._engines.get(entry)
        if contents:
            vision = loaded.engine.capabilities.images
            contents, media = await self._media.read(project, contents, prefix, vision=vision)
        builder = PromptBuilder(loaded, contents, system, plan, prefix, tuple(media))
        prompt = await builder.tokens()
        limit = min(entry.input_token_limit, loaded.context_length - 1)
        if len(prompt) > limit:
            raise errors.invalid_field(
                f"{prefix}contents",
                f"The input token count ({len(prompt)}) exceeds the maximum number of tokens allowed ({limit}).",
            )
        return builder, prompt

    async def tokens(self, project: str, entry: ModelEntry, body: GenerateContentRequest) -> list[int]:
        """The prompt a request's contents, system instruction and tools make (what a cache holds)."""
        plan = tool_plan(body, engine=entry.config.engine)
        _, prompt = await self.build(project, entry, body.contents, body.system_instruction, plan=plan)
        return prompt
