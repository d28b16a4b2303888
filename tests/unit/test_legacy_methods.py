"""The PaLM-era methods (generateText, countTextTokens, generateMessage, countMessageTokens), generateAnswer and
``dynamic/{id}`` over raw REST on the fake engine: shapes against the discovery document's schemas (their field
sets hard-coded here), validation 400s, enums given as numbers (also by the GAPIC REST clients, which send them so)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator

import httpx
import pytest

from localgem.corpora.wire import Chunk, ChunkData, QueryRequest, QueryResponse, RelevantChunk
from localgem.legacy.answer import yes_probability
from localgem.types.responses import LogprobsCandidate, LogprobsResult, TopCandidates
from tests.conftest import API_KEY, start_fake_server
from tests.fakes import FakeEngine
from tests.server import RunningServer
from tests.unit.test_hostile_requests import Connection, assert_still_serves, google_error, hostile_bodies

MODEL = "models/gemini-2.5-flash"
HEADERS = {"x-goog-api-key": API_KEY}

# Field sets of the discovery document's schemas (generativelanguage v1beta, rev 20240713).
GENERATE_TEXT_RESPONSE = {"candidates", "filters", "safetyFeedback"}
TEXT_COMPLETION = {"output", "safetyRatings", "citationMetadata"}
GENERATE_MESSAGE_RESPONSE = {"candidates", "messages", "filters"}
MESSAGE = {"author", "content", "citationMetadata"}
COUNT_TOKENS_RESPONSE = {"tokenCount"}
GENERATE_ANSWER_RESPONSE = {"answer", "answerableProbability", "inputFeedback"}
CANDIDATE = {
    "index",
    "safetyRatings",
    "content",
    "groundingAttributions",
    "finishReason",
    "citationMetadata",
    "tokenCount",
}
GROUNDING_ATTRIBUTION = {"sourceId", "content"}
ATTRIBUTION_SOURCE_ID = {"groundingPassage", "semanticRetrieverChunk"}
GROUNDING_PASSAGE_ID = {"passageId", "partIndex"}
SEMANTIC_RETRIEVER_CHUNK = {"source", "chunk"}


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine: FakeEngine) -> Iterator[RunningServer]:
    running = start_fake_server(tmp_path_factory.mktemp("legacy"), engine)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh_script(engine: FakeEngine) -> None:
    engine.script.clear()


def call(server: RunningServer, path: str, body: dict, version: str = "v1beta") -> httpx.Response:
    return httpx.post(f"{server.url}/{version}/{path}", json=body, headers=HEADERS, timeout=60)


def ok(server: RunningServer, path: str, body: dict) -> dict:
    reply = call(server, path, body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def bad(server: RunningServer, path: str, body: dict, status: int = 400) -> str:
    reply = call(server, path, body)
    assert reply.status_code == status, (body, reply.text)
    return google_error(status, reply.content)["message"]


def turn(text: str, role: str | None = "user") -> dict:
    return {"role": role, "parts": [{"text": text}]} if role else {"parts": [{"text": text}]}


# generateText and countTextTokens.


def test_generate_text_shape_candidates_stop_sequences_and_palm_safety_numbers(server: RunningServer) -> None:
    body = {
        "prompt": {"text": "Say words"},
        "candidateCount": 3,
        "maxOutputTokens": 6,
        "stopSequences": ["gamma"],
        "safetySettings": [{"category": 1, "threshold": 2}, {"category": "6", "threshold": "BLOCK_NONE"}],
    }
    got = ok(server, f"{MODEL}:generateText", body)
    assert set(got) <= GENERATE_TEXT_RESPONSE and "filters" not in got and "safetyFeedback" not in got
    assert len(got["candidates"]) == 3
    for candidate in got["candidates"]:
        assert set(candidate) <= TEXT_COMPLETION and "gamma" not in candidate["output"]
    assert got["candidates"][0]["output"] == "alpha beta "  # cut before the stop sequence, which is not included
    # without the stop sequence the same candidate runs on past it
    plain = ok(server, f"{MODEL}:generateText", {"prompt": {"text": "Say words"}, "maxOutputTokens": 4})
    assert plain["candidates"][0]["output"] == "alpha beta gamma delta"


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": {"text": "x"}, "safetySettings": [{"category": 7, "threshold": 1}]},  # a Gemini category
        {"prompt": {"text": "x"}, "safetySettings": [{"category": 1, "threshold": 1}, {"category": 1, "threshold": 2}]},
        {"prompt": {"text": "x"}, "safetySettings": [{"category": 2}]},
        {"prompt": {"text": "x"}, "safetySettings": [{"category": 99, "threshold": 1}]},
        {"prompt": {"text": "x"}, "candidateCount": 9},
        {"prompt": {"text": "x"}, "stopSequences": ["a", "b", "c", "d", "e", "f"]},
        {"prompt": {}},
    ],
)
def test_generate_text_refuses_bad_values(server: RunningServer, body: dict) -> None:
    bad(server, f"{MODEL}:generateText", body)


def test_count_text_tokens_is_count_tokens_of_the_same_text(server: RunningServer) -> None:
    text = "How many tokens is this sentence?"
    got = ok(server, f"{MODEL}:countTextTokens", {"prompt": {"text": text}})
    assert set(got) == COUNT_TOKENS_RESPONSE
    counted = ok(server, f"{MODEL}:countTokens", {"contents": [turn(text)]})
    assert got["tokenCount"] == counted["totalTokens"] > len(text)  # the chat turn's own tokens too
    assert "prompt.text" in bad(server, f"{MODEL}:countTextTokens", {})
    bad(server, "models/no-such-model:countTextTokens", {"prompt": {"text": "x"}}, 404)


# generateMessage and countMessageTokens.

PROMPT = {
    "context": "Answer like a pirate.",
    "examples": [{"input": {"content": "Hello"}, "output": {"content": "Ahoy"}}],
    "messages": [{"content": "Where is the ship?"}, {"content": "At sea."}, {"content": "And the crew?"}],
}


def test_generate_message_maps_the_prompt_to_a_conversation(server: RunningServer, engine: FakeEngine) -> None:
    engine.script.append("Asleep below deck.")
    got = ok(server, f"{MODEL}:generateMessage", {"prompt": PROMPT, "temperature": 0, "candidateCount": 1})
    assert set(got) <= GENERATE_MESSAGE_RESPONSE and "filters" not in got
    assert got["candidates"] == [{"author": "1", "content": "Asleep below deck."}]
    assert [m["author"] for m in got["messages"]] == ["0", "1", "0"]
    assert [m["content"] for m in got["messages"]] == [m["content"] for m in PROMPT["messages"]]
    assert all(set(m) <= MESSAGE for m in got["messages"] + got["candidates"])
    prompt = engine.prompts[-1]
    order = ["Answer like a pirate.", "Hello", "Ahoy", "Where is the ship?", "At sea.", "And the crew?"]
    assert [prompt.index(text) for text in order] == sorted(prompt.index(text) for text in order)
    # the same conversation as generateContent: context as system instruction, examples as earlier turns
    contents = [turn("Hello"), turn("Ahoy", "model"), turn("Where is the ship?"), turn("At sea.", "model")]
    request = {
        "systemInstruction": {"parts": [{"text": PROMPT["context"]}]},
        "contents": [*contents, turn("And the crew?")],
    }
    ok(server, f"{MODEL}:generateContent", {**request, "generationConfig": {"maxOutputTokens": 1}})
    assert engine.prompts[-1] == prompt
    counted = ok(server, f"{MODEL}:countMessageTokens", {"prompt": PROMPT})
    assert set(counted) == COUNT_TOKENS_RESPONSE
    assert (
        counted["tokenCount"] == ok(server, f"{MODEL}:countTokens", {"generateContentRequest": request})["totalTokens"]
    )


def test_generate_message_keeps_named_authors_and_answers_as_the_other(server: RunningServer) -> None:
    messages = [{"author": "alice", "content": "hi"}, {"content": "hello"}, {"author": "alice", "content": "how?"}]
    got = ok(server, f"{MODEL}:generateMessage", {"prompt": {"messages": messages}, "candidateCount": 2})
    assert [c["author"] for c in got["candidates"]] == ["1", "1"]
    assert [m["author"] for m in got["messages"]] == ["alice", "1", "alice"]
    messages[1]["author"] = "bot"
    got = ok(server, f"{MODEL}:generateMessage", {"prompt": {"messages": messages}})
    assert got["candidates"][0]["author"] == "bot"
    got = ok(server, f"{MODEL}:generateMessage", {"prompt": {"messages": [{"author": "1", "content": "hi"}]}})
    assert got["candidates"][0]["author"] == "0"  # the model takes the name the user did not


def test_generate_message_truncates_the_oldest_messages_first(server: RunningServer) -> None:
    long = "x" * 1500  # the fake's tokens are characters: 4096 of context
    messages = [{"content": f"{i} {long}"} for i in range(5)] + [{"content": "last"}]
    got = ok(server, f"{MODEL}:generateMessage", {"prompt": {"context": "ctx", "messages": messages}})
    kept = [m["content"] for m in got["messages"]]
    assert kept[-1] == "last" and 1 < len(kept) < len(messages)
    assert kept == [m["content"] for m in messages[-len(kept) :]]
    assert "exceeds" in bad(server, f"{MODEL}:generateMessage", {"prompt": {"messages": [{"content": long * 3}]}})


@pytest.mark.parametrize(
    ("prompt", "field"),
    [
        (None, "prompt.messages"),
        ({"context": "c"}, "prompt.messages"),
        ({"messages": []}, "prompt.messages"),
        ({"messages": [{"author": "a"}]}, "prompt.messages[0].content"),
        ({"messages": [{"author": "a", "content": "x"}, {"author": "a", "content": "y"}]}, "prompt.messages"),
        (
            {
                "messages": [
                    {"author": "a", "content": "x"},
                    {"author": "b", "content": "y"},
                    {"author": "c", "content": "z"},
                ]
            },
            "prompt.messages",
        ),
        (
            {"examples": [{"input": {"content": "x"}}], "messages": [{"content": "y"}]},
            "prompt.examples[0].output.content",
        ),
        (  # the last message is the model's author's (as the examples name it)
            {
                "examples": [{"input": {"content": "x"}, "output": {"author": "bot", "content": "y"}}],
                "messages": [{"author": "bot", "content": "z"}],
            },
            "prompt.messages",
        ),
    ],
)
def test_generate_message_and_count_refuse_bad_prompts(server: RunningServer, prompt: dict | None, field: str) -> None:
    body = {"prompt": prompt} if prompt is not None else {}
    for method in ("generateMessage", "countMessageTokens"):
        reply = call(server, f"{MODEL}:{method}", body)
        assert reply.status_code == 400, reply.text
        violations = reply.json()["error"]["details"][0]["fieldViolations"]
        assert violations[0]["field"] == field


# generateAnswer.

PASSAGES = {
    "passages": [
        {"id": "kettle", "content": {"parts": [{"text": "The kettle boils water in 47 seconds."}]}},
        {"id": "bees", "content": {"parts": [{"text": "Bees dance."}, {"text": "Honey bees dance to show flowers."}]}},
    ]
}


def test_generate_answer_from_inline_passages(server: RunningServer, engine: FakeEngine) -> None:
    engine.script += ["Honey bees dance to show where flowers are.", "Yes"]
    body = {
        "contents": [turn("Why do bees dance?")],
        "answerStyle": 1,  # ABSTRACTIVE, as the GAPIC clients send it
        "inlinePassages": PASSAGES,
        "temperature": 0.2,
        "safetySettings": [{"category": 8, "threshold": 2}, {"category": "HARM_CATEGORY_HARASSMENT", "threshold": 4}],
    }
    got = ok(server, f"{MODEL}:generateAnswer", body)
    assert set(got) <= GENERATE_ANSWER_RESPONSE
    answer = got["answer"]
    assert set(answer) <= CANDIDATE and answer["finishReason"] == "STOP"
    assert answer["content"] == {"role": "model", "parts": [{"text": "Honey bees dance to show where flowers are."}]}
    cited = []
    for attribution in answer["groundingAttributions"]:
        assert set(attribution) == GROUNDING_ATTRIBUTION and set(attribution["sourceId"]) <= ATTRIBUTION_SOURCE_ID
        source = attribution["sourceId"]["groundingPassage"]
        assert set(source) <= GROUNDING_PASSAGE_ID
        cited.append((source["passageId"], source.get("partIndex", 0), attribution["content"]["parts"][0]["text"]))
    # every passage given, the one the answer draws on first
    assert cited[0] == ("bees", 1, "Honey bees dance to show flowers.")
    assert sorted(cited) == [
        ("bees", 0, "Bees dance."),
        ("bees", 1, "Honey bees dance to show flowers."),
        ("kettle", 0, "The kettle boils water in 47 seconds."),
    ]
    assert 0 < got["answerableProbability"] < 1
    answered, probe = engine.prompts[-2:]
    assert "[3] Honey bees dance to show flowers." in answered and "in your own words" in answered
    assert "Why do bees dance?" in probe and probe.rstrip().endswith(
        "Can the question be answered from the passages above? Answer Yes or No.\nModel:"
    )


def test_answerable_probability_is_a_softmax_over_yes_and_no() -> None:
    def result(*candidates: tuple[str, float]) -> LogprobsResult:
        top = [LogprobsCandidate(token=t, token_id=i, log_probability=lp) for i, (t, lp) in enumerate(candidates)]
        return LogprobsResult(top_candidates=[TopCandidates(candidates=top)])

    assert yes_probability(result(("Yes", -0.1), ("No", -2.4), ("The", -3.0))) == pytest.approx(0.9089, abs=1e-3)
    # every spelling of an answer counts: " yes", "YES" add up
    assert yes_probability(result((" yes", -1.0), ("YES", -1.0), ("No", -1.0))) == pytest.approx(2 / 3)
    # an answer missing from the top candidates is taken at the last one's probability (an upper bound)
    assert yes_probability(result(("No", -0.2), ("Maybe", -3.0))) == pytest.approx(1 / (1 + 2.718281828**2.8))
    assert yes_probability(result(("The", -0.5))) == 0.5
    assert yes_probability(None) is None and yes_probability(LogprobsResult()) is None


class FakeCorpora:
    def __init__(self) -> None:
        self.asked: list[tuple] = []

    async def query_corpus(self, project: str, name: str, body: QueryRequest) -> QueryResponse:
        self.asked.append(("corpus", name, body))
        return QueryResponse(
            relevant_chunks=[self._hit("d1", "c1", 0.9, "Kettles boil."), self._hit("d2", "c7", 0.2, "Noise.")]
        )

    async def query_document(self, project: str, corpus: str, document: str, body: QueryRequest) -> QueryResponse:
        self.asked.append(("document", corpus, document, body))
        return QueryResponse(relevant_chunks=[self._hit(document, "c3", 0.8, "Only this.")])

    @staticmethod
    def _hit(document: str, chunk: str, score: float, text: str) -> RelevantChunk:
        name = f"corpora/facts/documents/{document}/chunks/{chunk}"
        return RelevantChunk(chunk_relevance_score=score, chunk=Chunk(name=name, data=ChunkData(string_value=text)))


@pytest.fixture
def corpora(server: RunningServer) -> Iterator[FakeCorpora]:
    fake = FakeCorpora()
    services = server.app.state.services
    server.app.state.services = dataclasses.replace(services, corpora=fake)
    yield fake
    server.app.state.services = services


def test_generate_answer_from_the_semantic_retriever(server: RunningServer, corpora: FakeCorpora) -> None:
    retriever = {
        "source": "corpora/facts",
        "query": {"parts": [{"text": "kettle speed"}]},
        "maxChunksCount": 4,
        "minimumRelevanceScore": 0.5,
        "metadataFilters": [
            {"key": "chunk.custom_metadata.topic", "conditions": [{"stringValue": "kitchen", "operation": 3}]}
        ],
    }
    body = {"contents": [turn("How fast?")], "answerStyle": "EXTRACTIVE", "semanticRetriever": retriever}
    got = ok(server, f"{MODEL}:generateAnswer", body)
    (kind, name, query) = corpora.asked[-1]
    assert (kind, name, query.query, query.results_count) == ("corpus", "facts", "kettle speed", 4)
    assert query.metadata_filters[0].conditions[0].operation == "EQUAL"
    (attribution,) = got["answer"]["groundingAttributions"]  # the chunk under the minimum score is left out
    chunk = attribution["sourceId"]["semanticRetrieverChunk"]
    assert set(chunk) == SEMANTIC_RETRIEVER_CHUNK
    assert chunk == {"source": "corpora/facts", "chunk": "corpora/facts/documents/d1/chunks/c1"}
    assert attribution["content"] == {"parts": [{"text": "Kettles boil."}]}
    retriever = {"source": "corpora/facts/documents/d9", "query": {"parts": [{"text": "q"}]}}
    got = ok(server, f"{MODEL}:generateAnswer", {**body, "semanticRetriever": retriever})
    assert corpora.asked[-1][:3] == ("document", "facts", "d9") and corpora.asked[-1][3].results_count == 5
    assert (
        got["answer"]["groundingAttributions"][0]["sourceId"]["semanticRetrieverChunk"]["source"] == retriever["source"]
    )


GOOD_ANSWER = {"contents": [turn("Why?")], "answerStyle": "VERBOSE", "inlinePassages": PASSAGES}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"contents": []}, "contents"),
        ({"contents": [turn("Why?"), turn("Because.", "model")]}, "contents[1].role"),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "text/plain", "data": "eA=="}}]}]},
            "contents[0].parts",
        ),
        ({"answerStyle": None}, "answer_style"),
        ({"answerStyle": 0}, "answer_style"),
        ({"inlinePassages": None}, "inline_passages"),
        ({"inlinePassages": {"passages": []}}, "inline_passages"),
        ({"inlinePassages": {"passages": [{"id": "a"}]}}, "inline_passages.passages[0].content"),
        (
            {
                "inlinePassages": {
                    "passages": [{"id": "a", "content": {"parts": [{"fileData": {"fileUri": "files/x"}}]}}]
                }
            },
            "inline_passages.passages[0].content.parts[0]",
        ),
        ({"safetySettings": [{"category": 1, "threshold": 1}]}, "safety_settings[0].category"),
        (
            {"inlinePassages": None, "semanticRetriever": {"source": "files/x", "query": turn("q")}},
            "semantic_retriever.source",
        ),
        ({"inlinePassages": None, "semanticRetriever": {"source": "corpora/c"}}, "semantic_retriever.query"),
        (
            {
                "inlinePassages": None,
                "semanticRetriever": {"source": "corpora/c", "query": turn("q"), "maxChunksCount": -1},
            },
            "semantic_retriever.max_chunks_count",
        ),
        (
            {
                "inlinePassages": None,
                "semanticRetriever": {"source": "corpora/c", "query": turn("q"), "metadataFilters": [{"key": ""}]},
            },
            "semantic_retriever.metadata_filters[0].key",
        ),
    ],
)
def test_generate_answer_refuses_bad_requests(server: RunningServer, change: dict, field: str) -> None:
    body = {k: v for k, v in {**GOOD_ANSWER, **change}.items() if v is not None}
    reply = call(server, f"{MODEL}:generateAnswer", body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["details"][0]["fieldViolations"][0]["field"] == field


def test_generate_answer_takes_one_grounding_source_and_unknown_enums_are_400(server: RunningServer) -> None:
    both = {**GOOD_ANSWER, "semanticRetriever": {"source": "corpora/c", "query": turn("q")}}
    assert "not both" in bad(server, f"{MODEL}:generateAnswer", both)
    bad(server, f"{MODEL}:generateAnswer", {**GOOD_ANSWER, "answerStyle": 7})
    bad(server, f"{MODEL}:generateAnswer", {**GOOD_ANSWER, "answerStyle": "TERSE"})


# dynamic/{id}.


def test_dynamic_endpoints_run_the_model_of_that_id(server: RunningServer) -> None:
    body = {"contents": [turn("hi")], "generationConfig": {"maxOutputTokens": 2}}
    for version in ("v1beta", "v1"):
        reply = call(server, "dynamic/gemini-2.5-flash:generateContent", body, version)
        assert reply.status_code == 200, reply.text
        direct = ok(server, f"{MODEL}:generateContent", body)
        assert reply.json()["candidates"] == direct["candidates"]
        assert reply.json()["modelVersion"] == direct["modelVersion"]
    stream = call(server, "dynamic/gemini-2.5-flash:streamGenerateContent?alt=sse", body)
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e.removeprefix("data: ")) for e in stream.text.split("\r\n\r\n") if e]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == "alpha beta"
    array = call(server, "dynamic/gemini-2.5-flash:streamGenerateContent", body)
    assert array.status_code == 200 and isinstance(array.json(), list)
    assert "dynamic/nope" in bad(server, "dynamic/nope:generateContent", body, 404)
    assert "dynamic/nope" in bad(server, "dynamic/nope:streamGenerateContent?alt=sse", body, 404)
    bad(server, "dynamic/gemini-2.5-flash:generateContent", {"contents": []})


# Hostile bodies and the GAPIC clients.

ROUTES = [
    (f"/v1beta/{MODEL}:countTextTokens", "prompt"),
    (f"/v1beta/{MODEL}:generateMessage", "prompt"),
    (f"/v1beta/{MODEL}:countMessageTokens", "prompt"),
    (f"/v1beta/{MODEL}:generateAnswer", "contents"),
    (f"/v1beta/{MODEL}:generateAnswer", "inlinePassages"),
    (f"/v1beta/{MODEL}:generateAnswer", "semanticRetriever"),
    ("/v1beta/dynamic/gemini-2.5-flash:generateContent", "contents"),
    ("/v1beta/dynamic/gemini-2.5-flash:streamGenerateContent?alt=sse", "contents"),
]


def test_hostile_bodies_are_4xx_on_the_legacy_routes(server: RunningServer) -> None:
    conn = Connection(server.url)
    try:
        for path, field in ROUTES:
            for body in hostile_bodies(field):
                status, _, data = conn.request("POST", path, body)
                assert 400 <= status < 500, (path, body[:80], status, data[:300])
                google_error(status, data)
        assert_still_serves(conn)
    finally:
        conn.close()


def test_the_gapic_rest_clients_send_enum_numbers_and_read_the_answers(
    server: RunningServer, engine: FakeEngine
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from google.ai import generativelanguage_v1beta as glm
        from google.api_core.client_options import ClientOptions

    options = ClientOptions(api_endpoint=server.url, api_key=API_KEY)
    text = glm.TextServiceClient(transport="rest", client_options=options)
    safety = [
        glm.SafetySetting(
            category=glm.HarmCategory.HARM_CATEGORY_TOXICITY,
            threshold=glm.SafetySetting.HarmBlockThreshold.BLOCK_ONLY_HIGH,
        )
    ]
    reply = text.generate_text(
        glm.GenerateTextRequest(
            model=MODEL, prompt=glm.TextPrompt(text="hi"), max_output_tokens=2, safety_settings=safety
        )
    )
    assert reply.candidates[0].output == "alpha beta"
    assert text.count_text_tokens(model=MODEL, prompt=glm.TextPrompt(text="hi")).token_count > 2
    discuss = glm.DiscussServiceClient(transport="rest", client_options=options)
    prompt = glm.MessagePrompt(messages=[glm.Message(content="hi")])
    engine.script.append("hello there")
    message = discuss.generate_message(model=MODEL, prompt=prompt)
    assert (message.candidates[0].author, message.candidates[0].content) == ("1", "hello there")
    assert discuss.count_message_tokens(model=MODEL, prompt=prompt).token_count > 2
    generative = glm.GenerativeServiceClient(transport="rest", client_options=options)
    engine.script += ["Bees dance.", "Yes"]
    answer = generative.generate_answer(
        glm.GenerateAnswerRequest(
            model=MODEL,
            contents=[glm.Content(role="user", parts=[glm.Part(text="Do bees dance?")])],
            answer_style=glm.GenerateAnswerRequest.AnswerStyle.EXTRACTIVE,
            inline_passages=glm.GroundingPassages(
                passages=[glm.GroundingPassage(id="p", content=glm.Content(parts=[glm.Part(text="Bees dance.")]))]
            ),
        )
    )
    assert answer.answer.content.parts[0].text == "Bees dance."
    assert answer.answer.grounding_attributions[0].source_id.grounding_passage.passage_id == "p"
    assert 0 < answer.answerable_probability < 1
