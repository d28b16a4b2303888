"""``generateAnswer``: attributed question answering (AQA) over passages, with the same model generateContent runs.

Grounding source (exactly one): ``inlinePassages`` (each text part of each passage is one passage, attributed as
``{passageId, partIndex}``) or ``semanticRetriever`` (the chunks the corpus or document ``:query`` returns for
``query``, with its ``metadataFilters``, at most ``maxChunksCount`` of them (default 5), those scoring below
``minimumRelevanceScore`` left out; attributed as ``{source, chunk}``).

The answer: the conversation's earlier turns, then one user turn holding the numbered passages and the question
(the last content), under a system instruction to answer from the passages only, in ``answerStyle``
(ABSTRACTIVE: a sentence or two in its own words; EXTRACTIVE: the shortest span copied from the passages;
VERBOSE: in detail); ``temperature`` applies. ``groundingAttributions`` cite every passage the model was given,
most relevant first: for retrieved chunks in retrieval order (similarity to the query); for inline passages by
how many of the answer's words each passage holds (then the question's words, then the order given).

``answerableProbability`` is the model's own estimate, read from its next-token distribution. A second request
to the same model gives it the same numbered passages and question and asks "Can the question be answered from
the passages above? Answer Yes or No.", after two fixed demonstration turns in that same form (an answerable
question answered "Yes", an unanswerable one "No": ``_PROBE_SHOTS``), which puts nearly all of the next token's
mass on the two answers even for small models. It generates one token with ``responseLogprobs`` and the top 20
candidates (``logprobsResult.topCandidates[0]``: log-softmax of the raw logits, before any sampling). The
probabilities of the candidates that read "yes" (any case, surrounding spaces or punctuation ignored) are
summed, likewise "no", and ``answerableProbability = P(yes) / (P(yes) + P(no))``: a softmax over the two
answers. Should either answer be missing from the top 20, its probability is taken as the 20th candidate's (an
upper bound on it); with an engine that reports no log probabilities the field is left out.

Safety: the four Gemini categories are accepted (see ``legacy.safety``); nothing is rated or blocked, so there
is no ``inputFeedback``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from localgem import errors
from localgem.corpora.wire import QueryRequest, QueryResponse
from localgem.generation.service import GenerationService
from localgem.legacy.safety import ANSWER_CATEGORIES, check_safety_settings
from localgem.legacy.wire import (
    AnswerCandidate,
    AttributionSourceId,
    GenerateAnswerRequest,
    GenerateAnswerResponse,
    GroundingAttribution,
    GroundingPassageId,
    SemanticRetrieverChunk,
    SemanticRetrieverConfig,
)
from localgem.retrieval.conditions import to_filter
from localgem.types.content import Content, Part
from localgem.types.generation import GenerateContentRequest, GenerationConfig, ThinkingConfig
from localgem.types.responses import LogprobsResult

DEFAULT_CHUNKS = 5
MAX_CHUNKS = 100
#: Top candidates read for the Yes/No probe (generation's maximum).
PROBE_CANDIDATES = 20

_STYLES = {
    "ABSTRACTIVE": ("Answer in one or two sentences, in your own words.", 256),
    "EXTRACTIVE": (
        "Answer with only the shortest exact words copied from the passages that answer the question, "
        "not a full sentence.",
        64,
    ),
    "VERBOSE": (
        "Answer in detail, with every relevant fact the passages give, in several sentences, paragraphs or "
        "bullet points as fits.",
        None,
    ),
}
_SYSTEM = (
    "You answer questions using only the numbered passages given with the question. Do not use other knowledge. {style}"
)
_PROBE_QUESTION = "Can the question be answered from the passages above? Answer Yes or No."
_SHOT_PASSAGES = "Passages:\n[1] The red bridge in Lomsk was built in 1921."
_PROBE_SHOTS = (
    ("When was the red bridge in Lomsk built?", "Yes"),
    ("How tall is the tower in Kent?", "No"),
)
_SOURCE = re.compile(r"corpora/([^/]+)(?:/documents/([^/]+))?")
_WORD = re.compile(r"\w+")


class Retriever(Protocol):
    """Corpora as generateAnswer queries them (``corpora.CorpusService``)."""

    async def query_corpus(self, project: str, name: str, body: QueryRequest) -> QueryResponse: ...

    async def query_document(self, project: str, corpus: str, document: str, body: QueryRequest) -> QueryResponse: ...


@dataclass(frozen=True)
class Passage:
    source: AttributionSourceId
    text: str


async def generate_answer(
    generation: GenerationService,
    corpora: Retriever | None,
    model: str,
    body: GenerateAnswerRequest,
    *,
    project: str,
    timeout: float | None,
) -> GenerateAnswerResponse:
    history, question = _question(body.contents)
    if body.answer_style in (None, "ANSWER_STYLE_UNSPECIFIED"):
        raise errors.invalid_field("answer_style", "answer_style is required (ABSTRACTIVE, EXTRACTIVE or VERBOSE).")
    check_safety_settings(body.safety_settings, ANSWER_CATEGORIES, "generateAnswer")
    passages = await _passages(body, corpora, project)
    style, max_tokens = _STYLES[body.answer_style]
    asked = Content(role="user", parts=[Part(text=f"{_listed(passages)}\n\nQuestion: {question}")])
    request = GenerateContentRequest(
        contents=[*history, asked],
        system_instruction=Content(parts=[Part(text=_SYSTEM.format(style=style))]),
        generation_config=GenerationConfig(temperature=body.temperature, max_output_tokens=max_tokens),
        safety_settings=body.safety_settings,
    )
    response = await generation.generate(await generation.plan(model, request, project=project, timeout=timeout))
    candidate = (response.candidates or [None])[0]
    text = (
        "".join(p.text or "" for p in (candidate.content.parts or []) if not p.thought)
        if candidate and candidate.content
        else ""
    )
    answer = AnswerCandidate(
        content=Content(role="model", parts=[Part(text=text)]),
        finish_reason=candidate.finish_reason if candidate else None,
        grounding_attributions=[
            GroundingAttribution(source_id=p.source, content=Content(parts=[Part(text=p.text)]))
            for p in _by_relevance(passages, text, question, body.inline_passages is not None)
        ]
        or None,
    )
    probability = await _answerable(generation, model, passages, question, project=project, timeout=timeout)
    return GenerateAnswerResponse(answer=answer, answerable_probability=probability)


def _question(contents: list[Content] | None) -> tuple[list[Content], str]:
    """The earlier turns, and the question (the last content, the user's)."""
    if not contents:
        raise errors.invalid_field("contents", "contents is required: the question to answer.")
    for i, content in enumerate(contents):
        if content.role not in (None, "", "user", "model"):
            raise errors.invalid_field(f"contents[{i}].role", "A content's role must be user or model.")
    last = contents[-1]
    where = f"contents[{len(contents) - 1}]"
    if last.role == "model":
        raise errors.invalid_field(f"{where}.role", "The last content must be the user's question.")
    question = "\n".join(p.text for p in last.parts or [] if p.text).strip()
    if not question:
        raise errors.invalid_field(f"{where}.parts", "The question (the last content) must have text.")
    return list(contents[:-1]), question


async def _passages(body: GenerateAnswerRequest, corpora: Retriever | None, project: str) -> list[Passage]:
    if body.inline_passages is not None and body.semantic_retriever is not None:
        raise errors.InvalidArgument("Set either inline_passages or semantic_retriever, not both.")
    if body.semantic_retriever is not None:
        return await _retrieved(body.semantic_retriever, corpora, project)
    if body.inline_passages is None or not body.inline_passages.passages:
        raise errors.invalid_field(
            "inline_passages", "A grounding source is required: inline_passages (non-empty) or semantic_retriever."
        )
    passages = []
    for i, passage in enumerate(body.inline_passages.passages):
        where = f"inline_passages.passages[{i}]"
        parts = passage.content.parts if passage.content is not None else None
        if not parts:
            raise errors.invalid_field(f"{where}.content", f"{where}.content is required.")
        for j, part in enumerate(parts):
            if part.text is None:
                raise errors.invalid_field(
                    f"{where}.content.parts[{j}]", "Grounding passages must be text: only text parts are supported."
                )
            source = AttributionSourceId(
                grounding_passage=GroundingPassageId(passage_id=passage.id or None, part_index=j or None)
            )
            passages.append(Passage(source, part.text))
    return passages


async def _retrieved(config: SemanticRetrieverConfig, corpora: Retriever | None, project: str) -> list[Passage]:
    where = "semantic_retriever"
    found = _SOURCE.fullmatch(config.source or "")
    if found is None:
        raise errors.invalid_field(
            f"{where}.source",
            f"{where}.source must name a corpus or a document: corpora/{{c}} or corpora/{{c}}/documents/{{d}}.",
        )
    query = "\n".join(p.text for p in (config.query.parts or []) if p.text).strip() if config.query else ""
    if not query:
        raise errors.invalid_field(f"{where}.query", f"{where}.query is required (text).")
    count = config.max_chunks_count or DEFAULT_CHUNKS
    if not 1 <= count <= MAX_CHUNKS:
        raise errors.invalid_field(f"{where}.max_chunks_count", f"max_chunks_count must be from 1 to {MAX_CHUNKS}.")
    minimum = config.minimum_relevance_score
    if minimum is not None and not math.isfinite(minimum):
        raise errors.invalid_field(f"{where}.minimum_relevance_score", "minimum_relevance_score must be a number.")
    to_filter(config.metadata_filters, f"{where}.metadata_filters")  # the 400s name this request's fields
    if corpora is None:
        raise errors.not_supported(where, "Semantic Retriever grounding")
    asked = QueryRequest(query=query, metadata_filters=config.metadata_filters, results_count=count)
    corpus, document = found.groups()
    if document is None:
        result = await corpora.query_corpus(project, corpus, asked)
    else:
        result = await corpora.query_document(project, corpus, document, asked)
    passages = []
    for hit in result.relevant_chunks or []:
        if hit.chunk is None or (minimum is not None and (hit.chunk_relevance_score or 0.0) < minimum):
            continue
        source = AttributionSourceId(
            semantic_retriever_chunk=SemanticRetrieverChunk(source=config.source, chunk=hit.chunk.name)
        )
        passages.append(Passage(source, hit.chunk.data.string_value or "" if hit.chunk.data else ""))
    return passages


def _listed(passages: Sequence[Passage]) -> str:
    if not passages:
        return "Passages: (none)"
    return "Passages:\n" + "\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, 1))


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


def _by_relevance(passages: list[Passage], answer: str, question: str, reorder: bool) -> list[Passage]:
    """Retrieved chunks keep their retrieval order; inline passages go by shared words with the answer, then
    with the question (a stable sort: ties keep the order given)."""
    if not reorder:
        return passages
    said, asked = _words(answer), _words(question)
    return sorted(passages, key=lambda p: (-len(_words(p.text) & said), -len(_words(p.text) & asked)))


async def _answerable(
    generation: GenerationService,
    model: str,
    passages: Sequence[Passage],
    question: str,
    *,
    project: str,
    timeout: float | None,
) -> float | None:
    shots: list[Content] = []
    for asked, answer in _PROBE_SHOTS:
        shots += [_probe_turn(_SHOT_PASSAGES, asked), Content(role="model", parts=[Part(text=answer)])]
    probe = GenerateContentRequest(
        contents=[*shots, _probe_turn(_listed(passages), question)],
        generation_config=GenerationConfig(
            temperature=0,
            max_output_tokens=1,
            candidate_count=1,
            response_logprobs=True,
            logprobs=PROBE_CANDIDATES,
            thinking_config=ThinkingConfig(thinking_budget=0),
        ),
    )
    response = await generation.generate(await generation.plan(model, probe, project=project, timeout=timeout))
    candidate = (response.candidates or [None])[0]
    return yes_probability(candidate.logprobs_result if candidate else None)


def _probe_turn(listed: str, question: str) -> Content:
    return Content(role="user", parts=[Part(text=f"{listed}\n\nQuestion: {question}\n\n{_PROBE_QUESTION}")])


def _reads(token: str) -> str:
    return token.strip().strip(".,!:;\"'*").lower()


def yes_probability(result: LogprobsResult | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the first step's top candidates (see the module's docstring)."""
    if result is None or not result.top_candidates or not result.top_candidates[0].candidates:
        return None
    top = result.top_candidates[0].candidates
    floor = min(c.log_probability for c in top)
    yes = [c.log_probability for c in top if _reads(c.token) == "yes"] or [floor]
    no = [c.log_probability for c in top if _reads(c.token) == "no"] or [floor]
    peak = max(*yes, *no)
    p_yes = sum(math.exp(lp - peak) for lp in yes)
    p_no = sum(math.exp(lp - peak) for lp in no)
    return p_yes / (p_yes + p_no)
