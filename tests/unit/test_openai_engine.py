"""The upstream engine's pieces that need no upstream server (its end-to-end tests, against a real
llama-server: ``tests/e2e/test_upstream_engine.py``)."""

from __future__ import annotations

import json

import pydantic
import pytest

from localgem import errors
from localgem.engines.base import FinishReason
from localgem.engines.openai.engine import _FINISH, OpenAIEngine, _logprobs, api_root
from localgem.engines.registry import ENGINES
from localgem.settings import ModelConfig


def test_base_url_with_or_without_v1() -> None:
    assert api_root("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080"
    assert api_root("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080"
    assert api_root("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_an_upstream_model_takes_a_base_url_and_no_weights() -> None:
    config = ModelConfig(id="up", engine="openai", base_url="http://127.0.0.1:8080/v1", upstream_model="m")
    assert config.path is None and config.package is None
    with pytest.raises(pydantic.ValidationError, match="base_url"):
        ModelConfig(id="up", engine="openai")
    with pytest.raises(pydantic.ValidationError, match="base_url"):
        ModelConfig(id="up", engine="openai", base_url="http://x", path="/m.gguf")
    assert ENGINES["openai"].tasks == ("generate", "embed")


def test_finish_reasons_map_to_geminis() -> None:
    assert _FINISH["stop"] is FinishReason.STOP
    assert _FINISH["length"] is FinishReason.MAX_TOKENS


def test_logprobs_in_both_forms_servers_send() -> None:
    openai_form = {"tokens": [" hi"], "token_logprobs": [-0.25], "top_logprobs": [{" hi": -0.25, " yo": -2.0}]}
    (step,) = _logprobs(openai_form)
    assert (step.chosen.token, step.chosen.logprob) == (" hi", -0.25)
    assert [t.token for t in step.top] == [" hi", " yo"]
    chat_form = {
        "content": [
            {"id": 5, "token": "a", "logprob": -0.1, "top_logprobs": [{"id": 5, "token": "a", "logprob": -0.1}]}
        ]
    }
    (step,) = _logprobs(chat_form)
    assert (step.chosen.token_id, step.top[0].token) == (5, "a")
    assert _logprobs(None) == ()


def test_an_engine_that_does_not_answer_is_unavailable() -> None:
    with pytest.raises(errors.Unavailable, match="does not answer"):
        OpenAIEngine("http://127.0.0.1:9/v1")  # the discard port: nothing listens on loopback


def test_the_server_kind_decides_what_it_can_enforce() -> None:
    from localgem.engines.openai.engine import Served, flavour_of

    assert flavour_of(Served({"chat_template": ""}, [], "m")) == "llama-server"
    assert flavour_of(Served(None, [{"id": "m", "owned_by": "vllm"}], "m")) == "vllm"
    assert flavour_of(Served(None, [{"id": "m", "owned_by": "library"}], "m")) == "generic"  # Ollama
    # upstream_kind, where a proxy hides what the server is: it decides.
    assert flavour_of(Served({"chat_template": ""}, [], "m"), "generic") == "generic"


def test_tokenize_requests_in_each_servers_form() -> None:
    from localgem.engines.openai.engine import tokenize_body

    assert tokenize_body("llama-server", "m", "hi", True, False) == {
        "content": "hi",
        "add_special": True,
        "parse_special": False,
    }
    assert tokenize_body("vllm", "m", "hi", False, True) == {"model": "m", "prompt": "hi", "add_special_tokens": False}
    both = tokenize_body("generic", "m", "hi", True, True)  # not knowing the server: both forms at once
    assert both["content"] == both["prompt"] == "hi" and both["add_special"] and both["add_special_tokens"]


def test_chat_template_and_special_tokens_beside_the_tokenizer(tmp_path) -> None:
    import json

    from localgem.engines.openai.engine import TokenizerFolder, tokenizer_folder

    assert tokenizer_folder(None) == tokenizer_folder(tmp_path) == TokenizerFolder()
    config = {"chat_template": "{{ messages }}", "bos_token": {"content": "<s>"}, "eos_token": "</s>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert tokenizer_folder(tmp_path / "tokenizer.json") == TokenizerFolder("{{ messages }}", "<s>", "</s>")
    (tmp_path / "chat_template.jinja").write_text("{{ bos_token }}")  # the newer form wins
    assert tokenizer_folder(tmp_path).chat_template == "{{ bos_token }}"


def test_optional_calls_are_a_structural_tag_for_vllm() -> None:
    from localgem.engines.base import ToolCalls, ToolFunction
    from localgem.engines.openai.engine import structural_tag

    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    calls = ToolCalls((ToolFunction("get_weather", parameters),), False, "<tool_call>", "</tool_call>", "arguments", 2)
    tag = structural_tag(calls)
    assert tag["triggers"] == ["<tool_call>"]
    (structure,) = tag["structures"]
    written = structure["begin"] + '{"city": "Oslo"}' + structure["end"]
    # What the model writes parses as the call localgem reads back.
    assert json.loads(written.removeprefix("<tool_call>\n").removesuffix("</tool_call>")) == {
        "name": "get_weather",
        "arguments": {"city": "Oslo"},
    }
    assert structure["schema"] == parameters
