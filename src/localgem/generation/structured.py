"""Structured output: ``responseMimeType`` + ``responseSchema`` / ``responseJsonSchema`` → an output constraint.

``application/json`` alone gives a JSON object or array; with a schema, JSON that validates against
it; ``text/x.enum`` with an enum schema gives exactly one of the values. A schema the model's engine
cannot enforce is a 400 naming the keyword — never unconstrained output presented as constrained.
"""

from __future__ import annotations

from localgem import errors
from localgem.engines import registry as engine_registry
from localgem.engines.base import UNBOUNDED, ChoiceOutput, JsonLimits, JsonOutput, OutputConstraint
from localgem.generation import schemas
from localgem.types.generation import GenerationConfig

JSON = "application/json"
ENUM = "text/x.enum"
_TEXT = (None, "", "text/plain")


def output_constraint(
    config: GenerationConfig, where: str, limits: JsonLimits = UNBOUNDED, *, engine: str
) -> OutputConstraint | None:
    """``engine``: the name of the engine that runs the request (see ``engines.registry``)."""
    mime = (config.response_mime_type or "").split(";")[0].strip().lower() or None
    google, json_schema = config.response_schema, config.response_json_schema
    if google is not None and json_schema is not None:
        raise errors.invalid_field(f"{where}.response_schema", "Set responseSchema or responseJsonSchema, not both.")
    has_schema = google is not None or json_schema is not None
    if mime in _TEXT:
        if has_schema:
            field = "response_schema" if google is not None else "response_json_schema"
            raise errors.invalid_field(
                f"{where}.{field}",
                f"{field}: a response schema needs responseMimeType application/json or text/x.enum, "
                f"not {config.response_mime_type or 'text/plain'}.",
            )
        return None
    if mime not in (JSON, ENUM):
        raise errors.invalid_field(
            f"{where}.response_mime_type",
            f"Unsupported responseMimeType {config.response_mime_type!r}: use text/plain, application/json "
            "or text/x.enum.",
        )
    try:
        if google is not None:
            schema = schemas.check_json_schema(
                schemas.google_to_json_schema(google, f"{where}.response_schema"), f"{where}.response_schema"
            )
        elif json_schema is not None:
            schema = schemas.check_json_schema(json_schema, f"{where}.response_json_schema")
        else:
            return JsonOutput(None, limits)
        if mime == ENUM:
            return ChoiceOutput(tuple(_enum_values(schema, where)))
        constraint = JsonOutput(schema, limits)
        engine_registry.check_constraint(engine, constraint)
        return constraint
    except schemas.UnenforceableSchema as exc:
        raise unenforceable(exc, where) from None


def unenforceable(exc: schemas.UnenforceableSchema, where: str) -> errors.InvalidArgument:
    """``where``: the schema's field, for a refusal that names no place in it."""
    path = where if exc.path is None else exc.path
    return errors.invalid_field(
        path, f"{path}: {exc}. localgem constrains decoding to the schema and refuses what it cannot enforce."
    )


def _enum_values(schema: dict, where: str) -> list[str]:
    values = schema.get("enum")
    if not values or not all(isinstance(value, str) for value in values):
        raise errors.invalid_field(
            f"{where}.response_schema", "text/x.enum needs a STRING schema with a non-empty enum."
        )
    return values
