"""Generation in rounds: the thought, then the answer, paused at each code block to run it.

One engine request per round, each prompt the previous one plus what was written since (the engine
reuses the cells of the prefix it already computed). A thought ends when the model closes it or when its
budget is spent, and then the closing tag is written for it; the answer's constraint (structured output,
function calls) applies from the answer's first token, never to the thought. With code execution, an
answer round ends where the model opens a fenced block; the code round ends at the closing fence; the
code runs in the sandbox, and the next answer round reads its output. One candidate only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from localgem.engines.base import CandidateFinished, FinishReason, GenerationRequest, OutputConstraint, TextDelta
from localgem.generation.code_blocks import CODE_OPEN, FENCE, code_source, prompt_block
from localgem.generation.code_execution import CodePlan, code_id, code_part, result_parts
from localgem.generation.loaded import LoadedModel
from localgem.generation.thinking import ThinkingPlan, signature
from localgem.types.content import Part


@dataclass(frozen=True)
class ThoughtDelta:
    index: int
    text: str


@dataclass(frozen=True)
class PartReady:
    """A whole part that is not streamed text: executableCode, codeExecutionResult, an image."""

    index: int
    part: Part


@dataclass(frozen=True)
class ThoughtEnded:
    """The candidate's thought is over: its tokens (thoughtsTokenCount) and its signature for the answer."""

    index: int
    tokens: int
    signature: bytes


RoundEvent = TextDelta | CandidateFinished | ThoughtDelta | PartReady | ThoughtEnded
EngineRun = Callable[[GenerationRequest], AsyncIterator[TextDelta | CandidateFinished]]


@dataclass
class _Round:
    text: str = ""
    tokens: int = 0
    finish: CandidateFinished | None = None  # None: stopped where the marker appeared


class Rounds:
    def __init__(
        self,
        model: LoadedModel,
        request: GenerationRequest,
        run: EngineRun,
        response_id: str,
        thinking: ThinkingPlan | None,
        code: CodePlan | None,
    ) -> None:
        self._model = model
        self._request = request
        self._run = run
        self._response_id = response_id
        self._thinking = thinking
        self._code = code
        self._prompt = list(request.prompt_tokens)
        self._spent = 0  # tokens the model wrote, thought included
        self._answering = thinking is None  # after a thought, the answer starts at its first visible character

    async def events(self) -> AsyncIterator[RoundEvent]:
        thought_tokens = 0
        if self._thinking is not None:
            thought = _Round()
            async for event in self._think(thought):
                yield event
            thought_tokens = thought.tokens
            if self._thinking.budget > 0:
                yield ThoughtEnded(0, thought_tokens, signature(self._response_id, 0, thought.text))
            if thought.finish is not None and self._spent >= self._request.max_tokens:
                yield CandidateFinished(0, FinishReason.MAX_TOKENS, 0)
                return
        runs = 0
        while True:
            answer = _Round()
            fenced = self._code is not None and runs < self._code.max_runs
            async for event in self._round(answer, FENCE if fenced else None, self._request.constraint, "text"):
                yield event
            if answer.finish is not None:
                yield dataclasses.replace(answer.finish, output_tokens=self._spent - thought_tokens)
                return
            assert self._code is not None
            await self._extend(answer.text + CODE_OPEN)
            block = _Round()
            async for _ in self._round(block, FENCE, None, "code"):
                pass
            source = code_source(block.text)
            block_id = code_id(self._response_id, 0, runs)
            runs += 1
            yield PartReady(0, code_part(source, block_id))
            if block.finish is not None and block.finish.reason != FinishReason.STOP:
                # The block never closed (out of tokens): the code is not run.
                yield dataclasses.replace(block.finish, output_tokens=self._spent - thought_tokens)
                return
            execution = await self._code.sandbox.run(source, self._code.files)
            for part in result_parts(execution, block_id):
                yield PartReady(0, part)
            await self._extend(prompt_block(source, execution))

    async def _think(self, thought: _Round) -> AsyncIterator[RoundEvent]:
        plan = self._thinking
        assert plan is not None
        if plan.budget == 0:
            await self._extend(("" if plan.opened else plan.open_tag) + "\n\n" + plan.close_tag + "\n\n")
            return
        if not plan.opened:
            await self._extend(plan.open_tag + "\n")
        async for event in self._round(thought, plan.close_tag, None, "thought", limit=plan.budget):
            if isinstance(event, TextDelta) and plan.include:
                yield ThoughtDelta(event.index, event.text)
        thought.text = thought.text.strip()
        await self._extend(thought.text + "\n" + plan.close_tag + "\n\n")

    async def _round(
        self,
        state: _Round,
        marker: str | None,
        constraint: OutputConstraint | None,
        kind: str,
        limit: int | None = None,
    ) -> AsyncIterator[TextDelta]:
        """Run the engine on the prompt so far until it finishes or writes ``marker`` (then aborted)."""
        room = min(self._request.max_tokens - self._spent, self._model.context_length - len(self._prompt))
        if limit is not None:
            room = min(room, limit)
        if room <= 0:
            state.finish = CandidateFinished(0, FinishReason.MAX_TOKENS, 0)
            return
        answer = kind == "text"
        request = dataclasses.replace(
            self._request,
            prompt_tokens=list(self._prompt),
            max_tokens=room,
            constraint=constraint,
            stop_sequences=self._request.stop_sequences if answer else (),
            logprobs=self._request.logprobs if answer else None,
            keep_as=None,
        )
        pending = ""
        steps = 0
        async with aclosing(self._run(request)) as events:
            async for event in events:
                if isinstance(event, CandidateFinished):
                    self._spent += event.output_tokens
                    state.tokens += event.output_tokens
                    state.finish = event
                    if answer and not self._answering:
                        pending = pending.lstrip()
                    if pending:
                        state.text += pending
                        yield TextDelta(0, pending)
                    return
                steps += 1
                pending += event.text
                at = pending.find(marker) if marker else -1
                if at >= 0:
                    state.text += pending[:at]
                    if pending[:at]:
                        yield TextDelta(0, pending[:at], event.logprobs)
                    self._spent += steps
                    state.tokens += steps
                    return  # leaving the loop aborts the engine's request
                held = _held_back(pending, marker) if marker else 0
                out, pending = pending[: len(pending) - held], pending[len(pending) - held :]
                if answer and not self._answering:
                    out = out.lstrip()
                    self._answering = bool(out)
                if out or event.logprobs:
                    state.text += out
                    yield TextDelta(0, out, event.logprobs)

    async def _extend(self, text: str) -> None:
        self._prompt += await self._model.engine.tokenize(text, False)


def _held_back(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` may be the start of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
