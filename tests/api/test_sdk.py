"""google-genai, unchanged but for its base URL, against localgem serving a real model."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import SMOLLM

MODEL = "gemini-2.5-flash"
GREEDY = types.GenerateContentConfig(temperature=0, max_output_tokens=24)


def test_generate_content(client: genai.Client) -> None:
    response = client.models.generate_content(model=MODEL, contents="Name a color.", config=GREEDY)
    assert response.text and response.text.strip()
    assert response.model_version == SMOLLM
    assert response.response_id
    candidate = response.candidates[0]
    assert candidate.content.role == "model" and candidate.index == 0
    assert candidate.finish_reason in (types.FinishReason.STOP, types.FinishReason.MAX_TOKENS)
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and 0 < usage.candidates_token_count <= 24
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT


def test_stream_concatenates_to_the_unary_text(client: genai.Client) -> None:
    unary = client.models.generate_content(model=MODEL, contents="Describe the sea.", config=GREEDY)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Describe the sea.", config=GREEDY))
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == unary.text
    assert chunks[-1].candidates[0].finish_reason == unary.candidates[0].finish_reason
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].usage_metadata.candidates_token_count == unary.usage_metadata.candidates_token_count
    assert len({c.response_id for c in chunks}) == 1


def test_count_tokens_matches_prompt_token_count(client: genai.Client, client_v1beta: genai.Client) -> None:
    contents = [types.Content(role="user", parts=[types.Part(text="How many tokens is this?")])]
    counted = client.models.count_tokens(model=MODEL, contents=contents)
    generated = client.models.generate_content(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(max_output_tokens=1)
    )
    assert counted.total_tokens == generated.usage_metadata.prompt_token_count > 5
    assert client_v1beta.models.count_tokens(model=MODEL, contents=contents).total_tokens == counted.total_tokens


def test_models_list_and_get(client: genai.Client) -> None:
    names = [m.name for m in client.models.list(config={"page_size": 1})]
    assert names == ["models/smollm2-135m-instruct", "models/gemma-3-270m", "models/all-minilm-l6-v2"]
    model = client.models.get(model="gemini-2.5-pro")
    assert model.name == "models/smollm2-135m-instruct"
    assert model.input_token_limit == 8192 and model.output_token_limit == 4096
    assert "generateContent" in model.supported_actions
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.get(model="not-a-model")
    assert caught.value.code == 404


def test_chat_multi_turn_sends_the_history(client: genai.Client) -> None:
    chat = client.chats.create(model=MODEL, config=GREEDY)
    first = chat.send_message("My name is Ada.")
    second = chat.send_message("What is my name?")
    assert first.text and second.text
    history = chat.get_history()
    assert [c.role for c in history] == ["user", "model", "user", "model"]
    # The second turn's prompt holds the first turn: it is longer than the first prompt plus its answer.
    assert second.usage_metadata.prompt_token_count > (
        first.usage_metadata.prompt_token_count + first.usage_metadata.candidates_token_count
    )


def test_chat_stream(client: genai.Client) -> None:
    chat = client.chats.create(model=MODEL, config=GREEDY)
    text = "".join(c.text or "" for c in chat.send_message_stream("Say hello."))
    assert text
    history = chat.get_history()
    # The SDK keeps one model Content per chunk; localgem joins them back into one turn.
    assert history[0].role == "user" and {c.role for c in history[1:]} == {"model"}
    assert "".join(p.text for c in history[1:] for p in c.parts) == text
    follow_up = chat.send_message("Thanks.")
    joined = client.models.count_tokens(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="Say hello.")]),
            types.Content(role="model", parts=[types.Part(text=text)]),
            types.Content(role="user", parts=[types.Part(text="Thanks.")]),
        ],
    )
    assert follow_up.usage_metadata.prompt_token_count == joined.total_tokens


def test_async_client_streaming(client: genai.Client) -> None:
    async def run() -> list[str]:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Count to five.", config=GREEDY)
        return [chunk.text async for chunk in stream]

    pieces = asyncio.run(run())
    unary = client.models.generate_content(model=MODEL, contents="Count to five.", config=GREEDY)
    assert "".join(p or "" for p in pieces) == unary.text


def test_system_instruction_changes_the_prompt_and_answer(client: genai.Client) -> None:
    plain = client.models.generate_content(model=MODEL, contents="Who are you?", config=GREEDY)
    pirate = client.models.generate_content(
        model=MODEL,
        contents="Who are you?",
        config=GREEDY.model_copy(
            update={
                "system_instruction": "You are Blackbeard, a pirate captain of the Caribbean sea in 1718. "
                "Always answer like a pirate, with plenty of arr and matey, and mention your ship, "
                "the Queen Anne's Revenge."
            }
        ),
    )
    assert pirate.usage_metadata.prompt_token_count != plain.usage_metadata.prompt_token_count
    assert pirate.text != plain.text


def test_candidate_count(client: genai.Client) -> None:
    config = types.GenerateContentConfig(candidate_count=3, temperature=1.0, seed=7, max_output_tokens=12)
    response = client.models.generate_content(model=MODEL, contents="Write a word.", config=config)
    assert [c.index for c in response.candidates] == [0, 1, 2]
    assert len({c.content.parts[0].text for c in response.candidates}) > 1
    stream = list(client.models.generate_content_stream(model=MODEL, contents="Write a word.", config=config))
    finished = [c.candidates[0].index for c in stream if c.candidates[0].finish_reason]
    assert sorted(finished) == [0, 1, 2]  # candidates decode side by side, each finishing once
    streamed = {
        i: "".join(c.candidates[0].content.parts[0].text for c in stream if c.candidates[0].index == i)
        for i in range(3)
    }
    assert streamed == {c.index: c.content.parts[0].text for c in response.candidates}  # seeded: same texts


def test_seed_makes_sampling_deterministic(client: genai.Client) -> None:
    def sample(seed: int) -> str:
        config = types.GenerateContentConfig(temperature=1.0, top_p=1.0, top_k=0, seed=seed, max_output_tokens=20)
        return client.models.generate_content(model=MODEL, contents="Tell me a story.", config=config).text

    assert sample(1234) == sample(1234)
    assert len({sample(seed) for seed in (1, 2, 3, 4)}) > 1  # the seed really drives the sampler


def test_stop_sequences_cut_the_text(client: genai.Client) -> None:
    full = client.models.generate_content(model=MODEL, contents="List three fruits.", config=GREEDY).text
    assert len(full) > 12
    stop = full[6:10]
    config = GREEDY.model_copy(update={"stop_sequences": [stop, "@@never@@"]})
    cut = client.models.generate_content(model=MODEL, contents="List three fruits.", config=config)
    assert cut.text == full[: full.index(stop)]
    assert cut.candidates[0].finish_reason == types.FinishReason.STOP
    streamed = "".join(
        c.text or ""
        for c in client.models.generate_content_stream(model=MODEL, contents="List three fruits.", config=config)
    )
    assert streamed == cut.text


def test_logprobs_are_real_log_probabilities(client: genai.Client) -> None:
    config = GREEDY.model_copy(update={"response_logprobs": True, "logprobs": 3})
    response = client.models.generate_content(model=MODEL, contents="Say yes.", config=config)
    candidate = response.candidates[0]
    result = candidate.logprobs_result
    assert len(result.chosen_candidates) == response.usage_metadata.candidates_token_count
    assert len(result.top_candidates) == len(result.chosen_candidates)
    for chosen, top in zip(result.chosen_candidates, result.top_candidates, strict=False):
        values = [c.log_probability for c in top.candidates]
        assert len(values) == 3 and values == sorted(values, reverse=True) and values[0] <= 0
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
        assert chosen.token_id == top.candidates[0].token_id  # greedy picks the most likely token
        assert chosen.log_probability == pytest.approx(values[0])
    assert "".join(c.token for c in result.chosen_candidates) == response.text
    assert result.log_probability_sum == pytest.approx(sum(c.log_probability for c in result.chosen_candidates))
    assert candidate.avg_logprobs == pytest.approx(result.log_probability_sum / len(result.chosen_candidates))


def test_presence_and_frequency_penalties_change_the_output(client: genai.Client) -> None:
    contents = "Repeat the word 'cat' many times."
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=30)
    plain = client.models.generate_content(model=MODEL, contents=contents, config=config).text
    penalised = client.models.generate_content(
        model=MODEL,
        contents=contents,
        config=config.model_copy(update={"presence_penalty": 1.9, "frequency_penalty": 1.9}),
    ).text
    assert plain != penalised


def test_errors_surface_as_sdk_errors(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="x", config=types.GenerateContentConfig(temperature=5))
    assert caught.value.code == 400 and "temperature" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(
            model=MODEL, contents=types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")
        )
    assert caught.value.code == 400 and "image/png" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(
            model=MODEL, contents="x", config=types.GenerateContentConfig(response_mime_type="text/csv")
        )
    assert caught.value.code == 400 and "Unsupported responseMimeType" in caught.value.message
    with pytest.raises(genai_errors.ClientError, match="not supported"):
        client.models.generate_content(
            model=MODEL,
            contents="x",
            config=types.GenerateContentConfig(tools=[types.Tool(url_context=types.UrlContext())]),
        )


def test_text_inline_data_is_read_as_text(client: genai.Client) -> None:
    document = types.Part.from_bytes(data=b"The password is swordfish.", mime_type="text/plain")
    with_doc = client.models.count_tokens(model=MODEL, contents=[document, "What is the password?"])
    without = client.models.count_tokens(model=MODEL, contents=["What is the password?"])
    assert with_doc.total_tokens > without.total_tokens + 4


def test_an_error_mid_stream_is_raised_by_the_sdk(real_server) -> None:
    # A server-side deadline (the header the SDK sends for its timeout) ends a stream that has
    # started; the base model never stops on its own.
    impatient = genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(
            base_url=real_server.url,
            headers={"X-Server-Timeout": "1"},
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    received = []
    with pytest.raises(genai_errors.APIError) as caught:
        for chunk in impatient.models.generate_content_stream(
            model="gemma-3-270m",
            contents="Once upon a time",
            config=types.GenerateContentConfig(max_output_tokens=4000, temperature=0),  # greedy: never ends early
        ):
            received.append(chunk.text)
    assert received and caught.value.code == 504


def test_an_output_stuck_in_a_loop_is_stopped(client: genai.Client) -> None:
    """Greedy SmolLM2 answers this with one stretch over and over; once 256 tokens repeat one stretch
    exactly, generation stops (finishReason OTHER, and a finishMessage saying why), streamed or not. (It loops on
    this prompt with flash attention, q8_0 or f16 K, and plain attention; "Repeat after me: la la la …", the
    prompt before, ends after 62 tokens with q8_0 K.)"""
    config = types.GenerateContentConfig(temperature=0, max_output_tokens=1500)
    prompt = "Say hello over and over again, forever."
    # google-genai reads finishMessage on Vertex only: the raw body has it.
    raw = config.model_copy(update={"should_return_http_response": True})
    body = json.loads(client.models.generate_content(model=MODEL, contents=prompt, config=raw).sdk_http_response.body)
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "OTHER" and "repeating itself" in candidate["finishMessage"]
    assert 256 < body["usageMetadata"]["candidatesTokenCount"] < 600
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt, config=config))
    assert "".join(chunk.text or "" for chunk in chunks) == candidate["content"]["parts"][0]["text"]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.OTHER
