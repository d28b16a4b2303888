"""A request's contents, system instruction and tools → prompt tokens, within the model's input limit.

Shared by generation (every request) and caching (what a cached content holds), so that a cache and
the requests that use it count the same prompt."""

from __future__ import annotations

from localgem import errors
from localgem.generation.code_execution import code_plan, with_text
from localgem.generation.function_calling import ToolPlan, tool_plan
from localgem.generation.loaded import EnginePool, LoadedModel
from localgem.generation.media import MediaReader
from localgem.generation.prompt_builder import PromptBuilder
from localgem.generation.tools import ServerTools
from localgem.models.registry import ModelEntry
from localgem.types.content import Content
from localgem.types.generation import GenerateContentRequest


class Prompts:
    def __init__(
        self, engines: EnginePool, media: MediaReader | None = None, served_tools: ServerTools | None = None
    ) -> None:
        self._engines = engines
        self._media = media or MediaReader()
        self._served = served_tools or {}  # server tools a cached content may hold (code execution)

    @property
    def media(self) -> MediaReader:
        return self._media

    async def loaded(self, entry: ModelEntry) -> LoadedModel:
        return await self._engines.get(entry)

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
        """The prompt a request's contents, system instruction and tools make (what a cache holds), as
        generation renders it (with how to run code, if the tools include code execution)."""
        plan = tool_plan(body, served=self._served, engine=entry.config.engine)
        system = body.system_instruction
        code = await code_plan(plan.server_tools if plan else (), project, body.contents, self._media)
        if code is not None:
            system = with_text(system, code.instructions())
        _, prompt = await self.build(project, entry, body.contents, system, plan=plan)
        return prompt
