"""Engine events → GenerateContentResponse, whole or as stream chunks shaped like Google's."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from localgem.engines.base import CandidateFinished, FinishReason, StepLogprobs, TextDelta, TokenLogprob
from localgem.generation import tool_prompt as tools
from localgem.generation.function_calling import CallRules, call_parts
from localgem.generation.rounds import PartReady, RoundEvent, ThoughtDelta, ThoughtEnded
from localgem.generation.tools import Grounding
from localgem.types.content import Content, Part
from localgem.types.responses import (
    Candidate,
    GenerateContentResponse,
    LogprobsCandidate,
    LogprobsResult,
    ModalityTokenCount,
    TopCandidates,
    UsageMetadata,
)


def _token(logprob: TokenLogprob) -> LogprobsCandidate:
    return LogprobsCandidate(token=logprob.token, token_id=logprob.token_id, log_probability=logprob.logprob)


def logprobs_result(steps: list[StepLogprobs]) -> LogprobsResult:
    return LogprobsResult(
        chosen_candidates=[_token(step.chosen) for step in steps],
        top_candidates=[TopCandidates(candidates=[_token(t) for t in step.top]) for step in steps]
        if any(step.top for step in steps)
        else None,
        log_probability_sum=sum(step.chosen.logprob for step in steps),
    )


#: Google's finishMessage on a candidate that ends in function calls (finishReason STOP), streaming or not.
FUNCTION_CALLS_MESSAGE = "Model generated function call(s)."
#: finishReason OTHER: Google has no reason for an output stopped because it fell into a loop.
REPETITION_MESSAGE = (
    "Generation stopped: the output was repeating itself exactly (see the server's repetition_stop_tokens)."
)


@dataclass(frozen=True)
class Ending:
    """How a candidate ended: Google's finishReason and, for some reasons, a finishMessage."""

    reason: str | None = None
    message: str | None = None


def _candidate(index: int, parts: list[Part], steps: list[StepLogprobs] | None, ending: Ending) -> Candidate:
    candidate = Candidate(content=Content(role="model", parts=parts), index=index)
    if ending.reason is not None:
        candidate.finish_reason = ending.reason
        candidate.finish_message = ending.message
    if steps is not None:
        result = candidate.logprobs_result = logprobs_result(steps)
        if steps and result.log_probability_sum is not None:
            candidate.avg_logprobs = result.log_probability_sum / len(steps)
    return candidate


def turn_token(response_id: str) -> str:
    """Google's ``turnToken`` for a response (undocumented; on every response and chunk since late 2025):
    ``v1_`` and, in unpadded URL-safe base64, a protobuf message whose fields 1 and 2 both hold the
    responseId. No request field takes it back; clients treat it as opaque."""
    raw = response_id.encode()
    message = b"".join(bytes([number << 3 | 2]) + _varint(len(raw)) + raw for number in (1, 2))
    return "v1_" + base64.urlsafe_b64encode(message).decode().rstrip("=")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass
class ResponseShape:
    """What every response of one request shares."""

    response_id: str
    model_version: str
    prompt_tokens: int
    logprobs: bool
    #: Prompt tokens the engine reused from its prefix cache (part of prompt_tokens, as Google counts).
    cached_tokens: int = 0
    #: The output may hold function calls (see prompting.tools), to be returned as functionCall parts.
    function_calling: bool = False
    #: What those calls must be: an output that breaks them ends MALFORMED_FUNCTION_CALL.
    call_rules: CallRules | None = None
    #: The prompt's tokens by modality (None: all TEXT).
    prompt_details: list[ModalityTokenCount] | None = None
    #: What retrieval tools found: cited in each finished candidate's groundingMetadata.
    grounding: Grounding | None = None
    #: Prompt tokens the tools added (the passages retrieved): toolUsePromptTokenCount, not promptTokenCount.
    tool_prompt_tokens: int = 0

    def grounded(self, candidate: Candidate, answer: str) -> Candidate:
        """A finished candidate with its groundingMetadata, if the request retrieved anything."""
        if self.grounding is not None:
            candidate.grounding_metadata = self.grounding.metadata(answer) or None
        return candidate

    def final_parts(self, index: int, text: str, finish: CandidateFinished | None) -> tuple[list[Part], Ending]:
        """A candidate's (remaining) text → its parts and how it ended."""
        looped = finish is not None and finish.reason == FinishReason.REPETITION
        reason = "OTHER" if looped else finish.reason.value if finish is not None else None
        message = REPETITION_MESSAGE if looped else None
        if not self.function_calling:
            return [Part(text=text)], Ending(reason, message)
        finished = finish is not None and finish.reason == FinishReason.STOP
        parts, problem = call_parts(text, self.response_id, index, self.call_rules, finished)
        if finish is None:
            return parts, Ending()
        if problem is not None:
            return parts, Ending("MALFORMED_FUNCTION_CALL", f"Malformed function call: {problem}.")
        calls = any(part.function_call is not None for part in parts)
        return parts, Ending(reason, FUNCTION_CALLS_MESSAGE if calls and reason == "STOP" else message)

    def usage(self, output_tokens: int | None = None, thought_tokens: int = 0) -> UsageMetadata:
        usage = UsageMetadata(
            prompt_token_count=self.prompt_tokens - self.tool_prompt_tokens,
            tool_use_prompt_token_count=self.tool_prompt_tokens or None,
            total_token_count=self.prompt_tokens + (output_tokens or 0) + thought_tokens,
            thoughts_token_count=thought_tokens or None,
            prompt_tokens_details=[
                ModalityTokenCount(
                    modality=d.modality,
                    token_count=d.token_count - self.tool_prompt_tokens if d.modality == "TEXT" else d.token_count,
                )
                for d in self.prompt_details or [ModalityTokenCount(modality="TEXT", token_count=self.prompt_tokens)]
            ],
        )
        if self.tool_prompt_tokens:
            usage.tool_use_prompt_tokens_details = [
                ModalityTokenCount(modality="TEXT", token_count=self.tool_prompt_tokens)
            ]
        if self.cached_tokens:
            usage.cached_content_token_count = self.cached_tokens
            usage.cache_tokens_details = [ModalityTokenCount(modality="TEXT", token_count=self.cached_tokens)]
        if output_tokens is not None:
            usage.candidates_token_count = output_tokens
            usage.candidates_tokens_details = [ModalityTokenCount(modality="TEXT", token_count=output_tokens)]
        return usage

    def response(self, candidates: list[Candidate], usage: UsageMetadata) -> GenerateContentResponse:
        return GenerateContentResponse(
            candidates=candidates,
            usage_metadata=usage,
            model_version=self.model_version,
            response_id=self.response_id,
            turn_token=turn_token(self.response_id),
        )


@dataclass
class _CandidateText:
    parts: list[str] = field(default_factory=list)  # the text since the last whole part
    steps: list[StepLogprobs] = field(default_factory=list)
    finish: CandidateFinished | None = None
    done: list[Part] = field(default_factory=list)  # thought, earlier text, code and its results, in order
    thought: list[str] = field(default_factory=list)
    signature: bytes | None = None
    thought_tokens: int = 0

    def close_text(self) -> None:
        if "".join(self.parts):
            self.done.append(Part(text="".join(self.parts)))
        self.parts.clear()


def _signed(parts: list[Part], signature: bytes | None) -> list[Part]:
    """The thought's signature rides on the first part of the answer, as Google's does."""
    for part in parts:
        if signature is not None and not part.thought:
            part.thought_signature = signature
            break
    return parts


def _answer_text(parts: list[Part]) -> str:
    return "".join(part.text or "" for part in parts if not part.thought)


@dataclass
class UnaryResponseBuilder:
    shape: ResponseShape
    _candidates: dict[int, _CandidateText] = field(default_factory=dict)

    def add(self, event: RoundEvent) -> None:
        state = self._candidates.setdefault(event.index, _CandidateText())
        if isinstance(event, TextDelta):
            state.parts.append(event.text)
            state.steps.extend(event.logprobs)
        elif isinstance(event, ThoughtDelta):
            state.thought.append(event.text)
        elif isinstance(event, ThoughtEnded):
            if thought := "".join(state.thought).strip():
                state.done.append(Part(text=thought, thought=True))
            state.signature, state.thought_tokens = event.signature, event.tokens
        elif isinstance(event, PartReady):
            state.close_text()
            state.done.append(event.part)
        else:
            state.finish = event

    def build(self) -> GenerateContentResponse:
        candidates = []
        for index, state in sorted(self._candidates.items()):
            text = "".join(state.parts)
            parts, ending = self.shape.final_parts(index, text, state.finish)
            if not text and state.done:
                parts = [part for part in parts if part.text is None]  # no empty text after a thought or code
            parts = _signed(state.done + parts, state.signature)
            candidate = _candidate(index, parts, state.steps if self.shape.logprobs else None, ending)
            candidates.append(self.shape.grounded(candidate, _answer_text(parts)))
        output = sum(s.finish.output_tokens for s in self._candidates.values() if s.finish)
        thoughts = sum(s.thought_tokens for s in self._candidates.values())
        return self.shape.response(candidates, self.shape.usage(output, thoughts))


@dataclass
class StreamChunker:
    """Sends each candidate's text as it comes: holding it back until the next event (so that the finish
    reason rode on the last text) made the first chunk wait one decode step. The finish reason goes out on
    a chunk of its own, with what was held (a call block) or an empty text, as Google's streams also end
    at times (with no text at all there; an empty text here, so that ``chunk.text`` is ``""``, not None).

    When the output may call functions, text that is (or may become) a call block is held until the
    candidate finishes: a function call arrives whole, in the last chunk, as Google sends it. Thoughts
    go out as they come, before the answer; code, its results and figures each as a whole part.
    """

    shape: ResponseShape
    candidates: int
    _pending_calls: dict[int, str] = field(default_factory=dict)
    _finished: int = 0
    _output_tokens: int = 0
    _thought_tokens: int = 0
    _signatures: dict[int, bytes] = field(default_factory=dict)  # a thought's, until the answer's first part
    _texts: dict[int, list[str]] = field(default_factory=dict)  # each candidate's text so far, if grounded

    def add(self, event: RoundEvent) -> GenerateContentResponse | None:
        if isinstance(event, ThoughtDelta):
            part = Part(text=event.text, thought=True)
            return self.shape.response([_candidate(event.index, [part], None, Ending())], self.shape.usage())
        if isinstance(event, ThoughtEnded):
            self._thought_tokens += event.tokens
            self._signatures[event.index] = event.signature
            return None
        if isinstance(event, PartReady):
            return self._chunk(TextDelta(event.index, ""), None, event.part)
        if isinstance(event, TextDelta):
            delta = self._visible(event) if self.shape.function_calling else event
            return self._chunk(delta, None) if delta.text or delta.logprobs else None
        self._finished += 1
        self._output_tokens += event.output_tokens
        return self._chunk(TextDelta(event.index, ""), event)

    def _visible(self, delta: TextDelta) -> TextDelta:
        text = self._pending_calls.pop(delta.index, "") + delta.text
        start = text.find(tools.CALL_OPEN)
        cut = start if start >= 0 else len(text) - tools.held_back(text)
        if cut < len(text):
            self._pending_calls[delta.index] = text[cut:]
        return TextDelta(delta.index, text[:cut], delta.logprobs)

    def _chunk(
        self, delta: TextDelta, finish: CandidateFinished | None, whole: Part | None = None
    ) -> GenerateContentResponse:
        steps = list(delta.logprobs) if self.shape.logprobs else None
        last = finish is not None and self._finished == self.candidates
        usage = self.shape.usage(self._output_tokens if last else None, self._thought_tokens if last else 0)
        if finish is None:
            text = delta.text + (self._pending_calls.pop(delta.index, "") if whole is not None else "")
            parts, ending = [Part(text=text)], Ending()
            if whole is not None:
                parts = [*([Part(text=text)] if text else []), whole]
        else:
            text = delta.text + self._pending_calls.pop(delta.index, "")
            parts, ending = self.shape.final_parts(delta.index, text, finish)
        if delta.index in self._signatures and any(part.text or part.text is None for part in parts):
            parts = _signed(parts, self._signatures.pop(delta.index))
        candidate = _candidate(delta.index, parts, steps, ending)
        if self.shape.grounding is not None:
            self._texts.setdefault(delta.index, []).append(text)
            if finish is not None:
                candidate = self.shape.grounded(candidate, "".join(self._texts.pop(delta.index)))
        return self.shape.response([candidate], usage)
