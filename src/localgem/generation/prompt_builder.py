"""A request's contents, system instruction and tools → the prompt, as the model's chat template renders it."""

from __future__ import annotations

from dataclasses import dataclass

from localgem.engines.base import PICTURE_MARKER, ChatPrompt, Picture
from localgem.generation.chat_template import Message
from localgem.generation.conversation import to_messages
from localgem.generation.function_calling import ToolPlan
from localgem.generation.loaded import LoadedModel
from localgem.generation.tool_prompt import template_tools
from localgem.perception import Perceived
from localgem.types.content import Content
from localgem.types.responses import ModalityTokenCount


@dataclass(frozen=True)
class PromptBuilder:
    """Renders the whole prompt, or the prompt of a prefix of its contents (countTokens' breakdown)."""

    loaded: LoadedModel
    contents: list[Content] | None  # fileData parts already replaced by the files' text
    system: Content | None
    plan: ToolPlan | None = None
    prefix: str = ""  # of field paths in errors
    media: tuple[Perceived, ...] = ()  # the text that stands for audio (etc.) parts in contents

    @property
    def _template_tools(self) -> bool:
        return self.loaded.template.supports_tools  # the model's own tool format

    def _messages(self, contents: list[Content] | None) -> list[Message]:
        if self._template_tools:
            return to_messages(contents, self.system, self.prefix, template_tools=True)
        tool_prompt = self.plan.instructions() if self.plan else None
        return to_messages(contents, self.system, self.prefix, tool_prompt=tool_prompt)

    def chat(self) -> ChatPrompt:
        """The conversation before any chat template, for an engine that renders it itself: calls and results
        as structured messages, the functions as declarations."""
        messages = to_messages(self.contents, self.system, self.prefix, template_tools=True)
        declared = template_tools(self.plan.functions) if self.plan is not None else []
        return ChatPrompt(tuple(m.as_dict() for m in messages), tuple(declared))

    def system_messages(self) -> list[Message]:
        """What the prompt says before the first content: the system instruction and, in the fallback
        format, the function declarations."""
        return [m for m in self._messages((self.contents or [])[:1]) if m.role == "system"]

    @property
    def declares_tools(self) -> bool:
        return self.plan is not None and bool(self.plan.functions)

    def render(self, upto: int | None = None, *, generation_prompt: bool = True) -> str:
        """The prompt text of the first ``upto`` contents (all by default; 0: only what precedes them)."""
        if upto == 0:
            messages = self.system_messages()
        else:
            messages = self._messages(self.contents if upto is None else (self.contents or [])[:upto])
        extra = {}
        if self._template_tools and self.declares_tools:
            assert self.plan is not None
            extra["tools"] = template_tools(self.plan.functions)
        return self.loaded.template.render(messages, add_generation_prompt=generation_prompt, **extra)

    async def tokens(self, upto: int | None = None, *, generation_prompt: bool = True) -> list[int]:
        return await self.tokenize(self.render(upto, generation_prompt=generation_prompt))

    async def tokenize(self, text: str) -> list[int]:
        """A rendered prompt's tokens (with the BOS token the model wants, unless the template wrote it).
        Its pictures are the first of the request's, in order: a rendered prefix of the contents holds
        the pictures of those contents."""
        info = self.loaded.engine.info
        add_bos = info.add_bos and not (info.bos_token and text.startswith(info.bos_token))
        return await self.loaded.engine.tokenize(text, add_bos, **self._pictures(text, self.pictures))

    async def modality_tokens(self, total: int) -> list[ModalityTokenCount]:
        """``total`` prompt tokens by modality: each transcript's tokens count as its medium's, the rest as TEXT."""
        counts: dict[str, int] = {}
        left = total
        first = 0
        for piece in self.media:
            count = min(await self.count_text(piece.text, first), left)
            first += len(piece.pictures)
            left -= count
            counts[piece.modality] = counts.get(piece.modality, 0) + count
        details = [ModalityTokenCount(modality="TEXT", token_count=left)]
        return details + [ModalityTokenCount(modality=m, token_count=n) for m, n in counts.items()]

    async def count_text(self, text: str, first_picture: int = 0) -> int:
        """Tokens of a bare text, as a piece of a prompt (no BOS). The pictures its markers stand for
        are the request's from ``first_picture`` on."""
        if not text:
            return 0
        pictures = self.pictures[first_picture:]
        return len(await self.loaded.engine.tokenize(text, False, **self._pictures(text, pictures)))

    @property
    def pictures(self) -> tuple[Picture, ...]:
        return tuple(picture for piece in self.media for picture in piece.pictures)

    @staticmethod
    def _pictures(text: str, pictures: tuple[Picture, ...]) -> dict[str, tuple[Picture, ...]]:
        """Engines without vision are never given pictures (nor asked to take the argument)."""
        shown = text.count(PICTURE_MARKER) if pictures else 0
        return {"pictures": pictures[:shown]} if shown else {}
