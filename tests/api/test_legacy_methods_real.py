"""The PaLM-era methods, generateAnswer and ``dynamic/{id}`` on the real small model, over raw REST."""

from __future__ import annotations

import httpx

from tests.conftest import API_KEY, SMOLLM
from tests.server import RunningServer

MODEL = f"models/{SMOLLM}"
PASSAGES = [
    {"id": "kettle", "content": {"parts": [{"text": "The Zorblax 9000 kettle boils water in exactly 47 seconds."}]}},
    {"id": "bees", "content": {"parts": [{"text": "Honey bees dance to tell each other where the flowers are."}]}},
]


def ok(server: RunningServer, path: str, body: dict) -> dict:
    reply = httpx.post(f"{server.url}/v1beta/{path}", json=body, headers={"x-goog-api-key": API_KEY}, timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()


def user(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def test_count_text_and_message_tokens_are_the_models_own_counts(real_server: RunningServer) -> None:
    text = "How many tokens does the Zorblax kettle take?"
    counted = ok(real_server, f"{MODEL}:countTokens", {"contents": [user(text)]})["totalTokens"]
    assert ok(real_server, f"{MODEL}:countTextTokens", {"prompt": {"text": text}})["tokenCount"] == counted
    prompt = {"context": "Be brief.", "messages": [{"content": "Hi"}, {"content": "Hello!"}, {"content": text}]}
    request = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [user("Hi"), {"role": "model", "parts": [{"text": "Hello!"}]}, user(text)],
    }
    whole = ok(real_server, f"{MODEL}:countTokens", {"generateContentRequest": request})["totalTokens"]
    assert ok(real_server, f"{MODEL}:countMessageTokens", {"prompt": prompt})["tokenCount"] == whole > counted
    embedder = "models/text-embedding-004"  # PaLM's embedding models counted text tokens too
    embedded = ok(real_server, f"{embedder}:countTokens", {"contents": [user(text)]})["totalTokens"]
    assert ok(real_server, f"{embedder}:countTextTokens", {"prompt": {"text": text}})["tokenCount"] == embedded


def test_generate_message_and_generate_text(real_server: RunningServer) -> None:
    prompt = {"context": "You are a helpful assistant.", "messages": [{"content": "What is the capital of France?"}]}
    got = ok(real_server, f"{MODEL}:generateMessage", {"prompt": prompt, "temperature": 0})
    (candidate,) = got["candidates"]
    assert candidate["author"] == "1" and "Paris" in candidate["content"]
    assert got["messages"] == [{"author": "0", "content": "What is the capital of France?"}]
    body = {"prompt": {"text": "Count: one, two, three,"}, "temperature": 0, "maxOutputTokens": 16}
    free = ok(real_server, f"{MODEL}:generateText", body)["candidates"][0]["output"]
    stopped = ok(real_server, f"{MODEL}:generateText", {**body, "stopSequences": [","]})["candidates"][0]["output"]
    assert "," in free and "," not in stopped and free.startswith(stopped)


def test_generate_answer_is_grounded_and_its_probability_comes_from_the_model(real_server: RunningServer) -> None:
    def answer(question: str) -> dict:
        body = {
            "contents": [user(question)],
            "answerStyle": "ABSTRACTIVE",
            "inlinePassages": {"passages": PASSAGES},
            "temperature": 0,
        }
        return ok(real_server, f"{MODEL}:generateAnswer", body)

    answerable = answer("How long does the Zorblax 9000 kettle take to boil water?")
    assert "47" in answerable["answer"]["content"]["parts"][0]["text"]
    cited = [a["sourceId"]["groundingPassage"]["passageId"] for a in answerable["answer"]["groundingAttributions"]]
    assert cited == ["kettle", "bees"]  # every passage given, the one the answer draws on first
    unanswerable = answer("What colour is the president's car?")
    low, high = unanswerable["answerableProbability"], answerable["answerableProbability"]
    assert 0 < low < 1 and 0 < high < 1 and low != high
    # 135M parameters barely tell these apart (about 0.18 against 0.07), but this pair they do
    assert high > low


def test_generate_answer_from_a_corpus(real_server: RunningServer) -> None:
    corpus = ok(real_server, "corpora", {"displayName": "Legacy answers"})
    document = ok(real_server, f"{corpus['name']}/documents", {"displayName": "facts"})
    texts = [p["content"]["parts"][0]["text"] for p in PASSAGES]
    requests = [{"parent": document["name"], "chunk": {"data": {"stringValue": t}}} for t in texts]
    chunks = ok(real_server, f"{document['name']}/chunks:batchCreate", {"requests": requests})["chunks"]
    retriever = {"source": corpus["name"], "query": user("kettle boiling time"), "maxChunksCount": 1}
    body = {"contents": [user("How long does the kettle take?")], "answerStyle": 2, "semanticRetriever": retriever}
    got = ok(real_server, f"{MODEL}:generateAnswer", body)
    (attribution,) = got["answer"]["groundingAttributions"]
    assert attribution["sourceId"]["semanticRetrieverChunk"] == {"source": corpus["name"], "chunk": chunks[0]["name"]}
    assert attribution["content"]["parts"][0]["text"] == texts[0]
    assert 0 < got["answerableProbability"] < 1


def test_dynamic_generate_content_runs_the_model(real_server: RunningServer) -> None:
    body = {"contents": [user("Say hello.")], "generationConfig": {"temperature": 0, "maxOutputTokens": 8}}
    direct = ok(real_server, f"{MODEL}:generateContent", body)
    dynamic = ok(real_server, f"dynamic/{SMOLLM}:generateContent", body)
    assert dynamic["candidates"][0]["content"] == direct["candidates"][0]["content"]
    assert dynamic["modelVersion"] == SMOLLM
