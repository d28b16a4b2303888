"""Proto3 JSON mapping for wire types, as Google's parser applies it.

Request fields are accepted in lowerCamelCase or snake_case at any depth (the Python SDK mixes
them in one request); responses are emitted in lowerCamelCase with empty fields omitted. Enums
accept names or numbers, int64 travels as a JSON string, bytes as standard or URL-safe base64.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationError, WithJsonSchema
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from localgem import errors


class WireModel(BaseModel):
    """Base of every request and response message."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        protected_namespaces=(),
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> bytes:
        """The wire form as JSON bytes; numpy arrays (embeddings) are written directly, float32 exact."""
        return orjson.dumps(
            self.model_dump(mode="python", by_alias=True, exclude_none=True), option=orjson.OPT_SERIALIZE_NUMPY
        )


M = TypeVar("M", bound=WireModel)


def _invalid(kind: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError("wire_value", "Invalid value ({kind}), {value}", {"kind": kind, "value": value})


def wire_enum(name: str, values: list[str], numbers: dict[str, int]) -> Any:
    """A string enum that also accepts the proto enum numbers (``enum-encoding=int`` clients)."""
    by_number = {number: value for value, number in numbers.items()}
    by_upper = {value.upper(): value for value in values}

    def parse(raw: Any) -> str:
        if isinstance(raw, int) and not isinstance(raw, bool) and raw in by_number:
            return by_number[raw]
        if isinstance(raw, str):
            if raw in by_upper.values():
                return raw
            if raw.upper() in by_upper:
                return by_upper[raw.upper()]
            if raw.isdigit() and int(raw) in by_number:
                return by_number[int(raw)]
        raise _invalid(name, _quote(raw))

    return Annotated[str, PlainValidator(parse), WithJsonSchema({"type": "string", "enum": values, "title": name})]


def _quote(raw: Any) -> str:
    return f'"{raw}"' if isinstance(raw, str) else repr(raw)


def _integer_parser(kind: str, bits: int) -> Any:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def parse(raw: Any) -> int:
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        elif isinstance(raw, str) and re.fullmatch(r"-?\d+", raw.strip()):
            value = int(raw)
        if value is None or not low <= value <= high:
            raise _invalid(kind, _quote(raw))
        return value

    return parse


#: proto int32: a JSON number (or numeric string) within 32 bits.
Int32 = Annotated[int, PlainValidator(_integer_parser("TYPE_INT32", 32)), WithJsonSchema({"type": "integer"})]

#: proto int64: emitted as a JSON string; accepted as number or string.
Int64 = Annotated[
    int,
    PlainValidator(_integer_parser("TYPE_INT64", 64)),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "int64"}),
]


def decode_base64(raw: str) -> bytes:
    """Standard or URL-safe alphabet, padded or not (the Python SDK sends URL-safe)."""
    text = re.sub(r"\s+", "", raw).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


def _parse_bytes(raw: Any) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        try:
            return decode_base64(raw)
        except (binascii.Error, ValueError):
            pass
    raise _invalid("TYPE_BYTES", "not valid base64" if isinstance(raw, str) else _quote(raw))


Base64Bytes = Annotated[
    bytes,
    PlainValidator(_parse_bytes),
    PlainSerializer(lambda v: base64.b64encode(v).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "byte"}),
]

_DURATION = re.compile(r"-?\d+(\.\d{1,9})?s")


def _parse_duration(raw: Any) -> str:
    if isinstance(raw, str) and _DURATION.fullmatch(raw):
        return raw
    raise _invalid("google.protobuf.Duration", _quote(raw))


Duration = Annotated[str, PlainValidator(_parse_duration), WithJsonSchema({"type": "string", "format": "duration"})]


def _parse_timestamp(raw: Any) -> str:
    if isinstance(raw, str) and "T" in raw:
        try:
            datetime.fromisoformat(raw.replace("z", "Z"))
            return raw
        except ValueError:
            pass
    raise _invalid("google.protobuf.Timestamp", _quote(raw))


Timestamp = Annotated[str, PlainValidator(_parse_timestamp), WithJsonSchema({"type": "string", "format": "date-time"})]


def parse_message(cls: type[M], data: Any) -> M:
    """Validate a decoded JSON body, turning pydantic's errors into Google's 400 messages."""
    if not isinstance(data, dict):
        raise errors.InvalidArgument(
            f"Invalid JSON payload received. Expected an object for {cls.__name__}, got {type(data).__name__}."
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        violations = [_violation(error) for error in exc.errors(include_url=False)]
        message = "\n".join(description for _, description in violations)
        raise errors.InvalidArgument(
            message,
            [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": field, "description": description} for field, description in violations
                    ],
                },
            ],
        ) from None


_TYPE_NAMES = {"float": "TYPE_FLOAT", "int": "TYPE_INT32", "bool": "TYPE_BOOL", "string": "TYPE_STRING"}


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        else:
            path += ("." if path else "") + to_snake(str(item))
    return path


def _json_value(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _violation(error: Any) -> tuple[str, str]:
    loc, kind = tuple(error["loc"]), error["type"]
    path = _field_path(loc)
    if kind == "extra_forbidden":
        parent = _field_path(loc[:-1])
        where = f" at '{parent}'" if parent else ""
        return path, f'Invalid JSON payload received. Unknown name "{loc[-1]}"{where}: Cannot find field.'
    if kind == "wire_value":
        ctx = error.get("ctx", {})
        return path, f"Invalid value at '{path}' ({ctx.get('kind')}), {ctx.get('value')}"
    prefix = kind.split("_")[0]
    if prefix in _TYPE_NAMES:
        return path, f"Invalid value at '{path}' ({_TYPE_NAMES[prefix]}), {_json_value(error.get('input'))}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return path, f"Invalid value at '{path}': expected a JSON object, got {_json_value(error.get('input'))}"
    if kind == "list_type":
        return path, f"Invalid value at '{path}': expected a JSON array, got {_json_value(error.get('input'))}"
    return path, f"Invalid value at '{path}': {error.get('msg')}"


def rfc3339(value: datetime) -> str:
    """A UTC instant as Google writes timestamps (``2025-01-02T03:04:05.123456Z``)."""
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
