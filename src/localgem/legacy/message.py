"""The discuss service: ``generateMessage`` and ``countMessageTokens``, a PaLM MessagePrompt run as a generateContent
conversation on the same model.

A MessagePrompt becomes: ``context`` → the system instruction; each example → a user turn (its ``input``) and a
model turn (its ``output``); then ``messages``, whose turns alternate between two authors. The last message is
the user's (it is what the model answers), so counting back from it the turns are user, model, user…; an author
given on a message must agree with that alternation (two authors, never the same twice in a row, the model's never
last). Authors left empty are filled in as Google's PaLM API did: "0" for the user, "1" for the model (or the
other way round if the one given takes that name); the candidates are the model author's next message.

Like Google's, a prompt longer than the model's input limit is truncated rather than refused: the oldest
``messages`` are dropped first, then the oldest ``examples``; the ``context`` and the last message never are.
The response's ``messages`` is the history the model was given (after any truncation, authors filled in).
``countMessageTokens`` counts the prompt generateMessage would send (countTokens of that request), untruncated.
"""

from __future__ import annotations

from dataclasses import dataclass

from localgem import errors
from localgem.generation.service import GenerationService
from localgem.legacy.wire import (
    CountMessageTokensRequest,
    GenerateMessageRequest,
    GenerateMessageResponse,
    Message,
    MessagePrompt,
    TokenCount,
)
from localgem.types.content import Content, Part
from localgem.types.generation import CountTokensRequest, GenerateContentRequest, GenerationConfig

#: How an over-long prompt is reported (``generation.prompts``): the cue to truncate it.
_TOO_LONG = "The input token count"


@dataclass(frozen=True)
class Conversation:
    context: str | None
    examples: list[tuple[Message, Message]]  # (input, output), authors filled in
    messages: list[Message]  # authors filled in
    user: str
    model: str

    def request(self, dropped_messages: int = 0, dropped_examples: int = 0) -> GenerateContentRequest:
        contents: list[Content] = []
        for given, answer in self.examples[dropped_examples:]:
            contents += [_turn("user", given), _turn("model", answer)]
        contents += [_turn("user" if m.author == self.user else "model", m) for m in self.messages[dropped_messages:]]
        system = Content(parts=[Part(text=self.context)]) if self.context else None
        return GenerateContentRequest(contents=contents, system_instruction=system)


def _turn(role: str, message: Message) -> Content:
    return Content(role=role, parts=[Part(text=message.content)])


def conversation(prompt: MessagePrompt | None) -> Conversation:
    """The prompt, checked, with every author known; a 400 naming the field otherwise."""
    if prompt is None or not prompt.messages:
        raise errors.invalid_field("prompt.messages", "prompt.messages is required and must not be empty.")
    examples = prompt.examples or []
    for i, example in enumerate(examples):
        for side in ("input", "output"):
            message = getattr(example, side)
            if message is None or not message.content:
                where = f"prompt.examples[{i}].{side}.content"
                raise errors.invalid_field(where, f"{where} is required.")
    count = len(prompt.messages)
    named: dict[bool, set[str]] = {True: set(), False: set()}  # is the user's turn → the authors given
    for i, message in enumerate(prompt.messages):
        if not message.content:
            raise errors.invalid_field(f"prompt.messages[{i}].content", f"prompt.messages[{i}].content is required.")
        if message.author:
            named[(count - 1 - i) % 2 == 0].add(message.author)
    for example in examples:
        for side, is_user in (("input", True), ("output", False)):
            if author := getattr(example, side).author:
                named[is_user].add(author)
    for is_user, who in named.items():
        if len(who) > 1:
            turns = "user" if is_user else "model"
            raise errors.invalid_field(
                "prompt.messages",
                f"Messages must alternate between two authors, ending with the user's: the {turns} turns have the "
                f"authors {', '.join(sorted(who))}.",
            )
    user = next(iter(named[True]), None)
    model = next(iter(named[False]), None)
    if user is not None and user == model:
        raise errors.invalid_field(
            "prompt.messages",
            f"Messages must alternate between two authors, ending with the user's: {user} is both the author of the "
            "last message and of the turns it answers.",
        )
    if model is None:
        model = "1" if user != "1" else "0"
    if user is None:
        user = "0" if model != "0" else "1"
    messages = [
        Message(author=message.author or (user if (count - 1 - i) % 2 == 0 else model), content=message.content)
        for i, message in enumerate(prompt.messages)
    ]
    pairs = [
        (
            Message(author=e.input.author or user, content=e.input.content),
            Message(author=e.output.author or model, content=e.output.content),
        )
        for e in examples
    ]
    return Conversation(prompt.context or None, pairs, messages, user, model)


async def _fitted(
    generation: GenerationService, model: str, talk: Conversation, project: str
) -> tuple[GenerateContentRequest, int]:
    """The request within the model's input limit, and how many messages it dropped (oldest first, then
    examples): the fewest drops that fit, found by bisection over countTokens."""

    async def fits(dropped_messages: int, dropped_examples: int) -> bool:
        request = talk.request(dropped_messages, dropped_examples)
        try:
            await generation.count_tokens(model, CountTokensRequest(generate_content_request=request), project=project)
        except errors.InvalidArgument as exc:
            if exc.message.startswith(_TOO_LONG):
                return False
            raise
        return True

    if await fits(0, 0):
        return talk.request(), 0
    last = len(talk.messages) - 1  # the last message is always kept
    if await fits(last, 0):
        low, high = 1, last  # messages: the fewest drops that fit is in (0, last]
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if await fits(middle, 0) else (middle + 1, high)
        return talk.request(low), low
    everything = len(talk.examples)
    if not await fits(last, everything):  # even the context and the last message are too long: say so
        alone = CountTokensRequest(generate_content_request=talk.request(last, everything))
        await generation.count_tokens(model, alone, project=project)
    low, high = 1, len(talk.examples)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if await fits(last, middle) else (middle + 1, high)
    return talk.request(last, low), last


async def generate_message(
    generation: GenerationService, model: str, body: GenerateMessageRequest, *, project: str, timeout: float | None
) -> GenerateMessageResponse:
    talk = conversation(body.prompt)
    request, dropped = await _fitted(generation, model, talk, project)
    request.generation_config = GenerationConfig(
        temperature=body.temperature, candidate_count=body.candidate_count, top_p=body.top_p, top_k=body.top_k
    )
    plan = await generation.plan(model, request, project=project, timeout=timeout)
    response = await generation.generate(plan)
    candidates = [
        Message(
            author=talk.model,
            content="".join(p.text or "" for p in (c.content.parts or []) if not p.thought) if c.content else "",
        )
        for c in response.candidates or []
    ]
    return GenerateMessageResponse(candidates=candidates or None, messages=talk.messages[dropped:])


async def count_message_tokens(
    generation: GenerationService, model: str, body: CountMessageTokensRequest, *, project: str
) -> TokenCount:
    request = conversation(body.prompt).request()
    counted = await generation.count_tokens(
        model, CountTokensRequest(generate_content_request=request), project=project
    )
    return TokenCount(token_count=counted.total_tokens or None)
