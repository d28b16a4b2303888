"""Proto3 JSON mapping of the request and response types."""

from __future__ import annotations

import pytest

from localgem import errors
from localgem.types.generation import GenerateContentRequest
from localgem.types.tools import Schema
from localgem.types.wire import parse_message


def parse(data: dict) -> GenerateContentRequest:
    return parse_message(GenerateContentRequest, data)


def test_camel_and_snake_case_mixed_at_every_depth() -> None:
    request = parse(
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inline_data": {"mimeType": "text/plain", "data": "aGk"}},
                        {"text": "x", "thoughtSignature": "AAEC"},
                    ],
                }
            ],
            "generation_config": {
                "maxOutputTokens": 5,
                "stop_sequences": ["."],
                "thinkingConfig": {"thinking_budget": 0},
            },
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        }
    )
    assert request.contents[0].parts[0].inline_data.data == b"hi"
    assert request.contents[0].parts[1].thought_signature == b"\x00\x01\x02"
    assert request.generation_config.max_output_tokens == 5
    assert request.generation_config.stop_sequences == ["."]
    assert request.generation_config.thinking_config.thinking_budget == 0
    assert request.system_instruction.parts[0].text == "be brief"


def test_unknown_fields_are_rejected_naming_the_field_and_where() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        parse({"contents": [], "generationConfig": {"temperatur": 1}})
    assert caught.value.message == (
        "Invalid JSON payload received. Unknown name \"temperatur\" at 'generation_config': Cannot find field."
    )
    assert caught.value.details[0]["fieldViolations"][0]["field"] == "generation_config.temperatur"
    with pytest.raises(errors.InvalidArgument, match='Unknown name "bogus": Cannot find field'):
        parse({"bogus": 1})


@pytest.mark.parametrize(
    "category, threshold",
    [("HARM_CATEGORY_HATE_SPEECH", "BLOCK_NONE"), (8, 4), ("8", "4"), ("harm_category_hate_speech", "block_none")],
)
def test_enums_accept_names_and_numbers(category, threshold) -> None:
    setting = parse({"safetySettings": [{"category": category, "threshold": threshold}]}).safety_settings[0]
    assert (setting.category, setting.threshold) == ("HARM_CATEGORY_HATE_SPEECH", "BLOCK_NONE")


def test_bad_enum_value_is_a_clear_error() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        parse({"safetySettings": [{"category": "HARM_CATEGORY_NOPE", "threshold": 99}]})
    message = caught.value.message
    assert "Invalid value at 'safety_settings[0].category' (HarmCategory), \"HARM_CATEGORY_NOPE\"" in message
    assert "Invalid value at 'safety_settings[0].threshold' (HarmBlockThreshold), 99" in message


@pytest.mark.parametrize("encoded", ["+/8=", "+/8", "-_8=", "-_8"])
def test_bytes_accept_standard_and_url_safe_base64_with_or_without_padding(encoded: str) -> None:
    blob = parse({"contents": [{"parts": [{"inlineData": {"mimeType": "text/plain", "data": encoded}}]}]})
    assert blob.contents[0].parts[0].inline_data.data == b"\xfb\xff"


def test_invalid_base64_is_rejected() -> None:
    with pytest.raises(errors.InvalidArgument, match="TYPE_BYTES"):
        parse({"contents": [{"parts": [{"inlineData": {"mimeType": "text/plain", "data": "a$b"}}]}]})


def test_int64_in_as_number_or_string_and_out_as_string() -> None:
    assert Schema.model_validate({"maxItems": "5", "minItems": 2}).to_wire() == {"maxItems": "5", "minItems": "2"}


@pytest.mark.parametrize("value", [2**31, "x", 1.5, True])
def test_int32_fields_reject_what_is_not_an_int32(value) -> None:
    with pytest.raises(errors.InvalidArgument, match=r"generation_config.seed' \(TYPE_INT32\)"):
        parse({"generationConfig": {"seed": value}})


def test_int32_fields_accept_numeric_strings() -> None:
    assert parse({"generationConfig": {"seed": "-7"}}).generation_config.seed == -7


def test_wrong_types_name_the_field() -> None:
    with pytest.raises(errors.InvalidArgument, match=r"'generation_config.temperature' \(TYPE_FLOAT\), \"hot\""):
        parse({"generationConfig": {"temperature": "hot"}})
    with pytest.raises(errors.InvalidArgument, match="'contents': expected a JSON array"):
        parse({"contents": {"parts": []}})


def test_output_is_camel_case_without_empty_fields() -> None:
    request = parse({"contents": [{"parts": [{"text": "hi"}]}], "generation_config": {"topK": 3}})
    assert request.to_wire() == {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"topK": 3}}
