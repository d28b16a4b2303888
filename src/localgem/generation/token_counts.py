"""countTokens' breakdown of a prompt: each content's part tokens and turn overhead, and the system
instruction's, adding up to the prompt's total.

Counts are the model's own tokenizer on the prompt its chat template renders:

- ``partTokens``: each part's tokens, counted within its content (the tokens the content's text
  has after the part, minus those it has before it), so a content's parts add up to its text's tokens.
- ``roleTokens`` of a content: what the content adds to the prompt beyond its parts, where it stands:
  its turn markers (``<|im_start|>user\\n`` … ``<|im_end|>\\n``), the separator when it joins the turn
  before it (consecutive contents of one role are one turn), and what the template writes only around
  its position: for the first content, anything written before it when the request has no system
  instruction or tools (a BOS token, SmolLM2's default system prompt); for the last, the generation
  prompt that opens the model's answer (``<|im_start|>assistant\\n``).
- ``systemInstructionsTokens``: the system instruction's ``partTokens``, and as ``roleTokens`` the rest
  of what the system instruction and the function declarations put in the prompt: the system turn's
  markers, a BOS token before them, the declarations. Empty (``{}``, as Google sends it) without
  system instruction and tools.

Each content's share is its marginal cost: the prompt of the contents up to it minus the prompt of
those before it, so a client trimming history sees what dropping a turn saves. The system
instruction's is what is rendered before the first content, or, for templates that fold it into the
first turn (Gemma's), what it adds to the whole prompt; the first contents then give that up.
"""

from __future__ import annotations

import dataclasses

from localgem import errors
from localgem.engines.base import PICTURE_MARKER
from localgem.generation.conversation import content_text
from localgem.generation.prompt_builder import PromptBuilder
from localgem.types.content import Content
from localgem.types.responses import ContentTokens


@dataclasses.dataclass(frozen=True)
class TokenBreakdown:
    contents: list[ContentTokens]
    system: ContentTokens


async def token_breakdown(builder: PromptBuilder, total: int) -> TokenBreakdown:
    """``total``: the tokens of the whole prompt (``builder.tokens()``), which the pieces add up to."""
    contents = builder.contents or []
    system_parts = []
    if builder.system is not None:
        system_parts = await _part_tokens(builder, builder.system, f"{builder.prefix}system_instruction")
    parts, first_picture = [], 0
    for k, content in enumerate(contents):
        parts.append(await _part_tokens(builder, content, f"{builder.prefix}contents[{k}]", first_picture))
        first_picture += content_text(content, f"{builder.prefix}contents[{k}]").count(PICTURE_MARKER)
    has_preamble = bool(builder.system_messages()) or builder.declares_tools
    try:
        preamble, shares = await _shares(builder, total, has_preamble, parts)
    except errors.ApiError:
        # A template that refuses part of a conversation (one that reads messages[0] to place its tools):
        # each content is its parts, and all the template wrote is the system instruction's or the last turn's.
        shares = [sum(p) for p in parts]
        preamble = sum(system_parts) if has_preamble else 0
        overhead = total - sum(shares) - preamble
        if has_preamble or not shares:
            preamble += overhead
        else:
            shares[-1] += overhead

    system = ContentTokens()
    if has_preamble:
        system = _fit(system_parts, preamble)
        if builder.system is None:
            system.part_tokens = None
    elif builder.system is not None:
        system.part_tokens = system_parts
    return TokenBreakdown([_fit(p, share) for p, share in zip(parts, shares, strict=True)], system)


async def _shares(
    builder: PromptBuilder, total: int, has_preamble: bool, parts: list[list[int]]
) -> tuple[int, list[int]]:
    """The preamble's share of the prompt and each content's (see the module's docstring)."""
    before = preamble = 0
    previous = None  # the text rendered so far
    if has_preamble:
        try:
            previous = builder.render(0, generation_prompt=False)
            before = len(await builder.tokenize(previous))
        except errors.ApiError:  # a template that cannot render without a turn: nothing comes before the first
            pass
        bare = dataclasses.replace(builder, system=None, plan=None)
        # Templates that fold the system text into the first turn (Gemma's) render little before it.
        preamble = max(before, total - len(await bare.tokens()))

    # Each content's text is what its prefix of the conversation adds to the rendered prompt; tokenizing
    # only that keeps a long conversation linear. Turn markers are special tokens (or at least split
    # words), so the pieces tokenize as they do in the whole; the last share takes the generation prompt
    # and whatever a seam would still merge.
    shares, counted = [], before
    for k in range(1, len(parts) + 1):
        text = builder.render(k, generation_prompt=False)
        if previous is not None and text.startswith(previous):
            share = await builder.count_text(text[len(previous) :], previous.count(PICTURE_MARKER))
        else:  # a template that rewrites earlier turns as the conversation grows (or the first turn's BOS)
            share = len(await builder.tokenize(text)) - counted
        shares.append(share)
        counted += share
        previous = text
    if shares:
        shares[-1] += total - counted

    owed = preamble - before  # what the template wrote inside the first turns on the preamble's behalf
    for k, share in enumerate(shares):
        taken = min(owed, max(share - sum(parts[k]), 0))
        shares[k] -= taken
        owed -= taken
    return preamble - owed, shares


async def _part_tokens(builder: PromptBuilder, content: Content, where: str, first_picture: int = 0) -> list[int]:
    counts, text, previous = [], "", 0
    for j, part in enumerate(content.parts or []):
        text += content_text(Content(parts=[part]), f"{where}.parts[{j}]")
        now = await builder.count_text(text, first_picture)
        counts.append(now - previous)
        previous = now
    return counts


def _fit(parts: list[int], share: int) -> ContentTokens:
    """Parts and turn overhead within a share of the prompt.

    A template may render a part differently from the part alone (it trims whitespace, or writes
    function calls in its own tool format); if the parts come to more than the share, the last parts
    give up the difference, so the pieces still add up to the total."""
    parts = list(parts)
    excess = sum(parts) - share
    for j in reversed(range(len(parts))):
        if excess <= 0:
            break
        cut = min(parts[j], excess)
        parts[j] -= cut
        excess -= cut
    return ContentTokens(part_tokens=parts, role_tokens=max(share - sum(parts), 0))
