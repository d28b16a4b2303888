"""tools[].functionDeclarations and toolConfig.functionCallingConfig → what the prompt says and what
the output constraint allows; the model's output → functionCall parts."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from localgem import errors
from localgem.engines import registry as engine_registry
from localgem.engines.base import UNBOUNDED, JsonLimits, JsonOutput, ToolCalls, ToolFunction, anchored_patterns
from localgem.generation import schemas
from localgem.generation import tool_prompt as tools
from localgem.generation.structured import unenforceable
from localgem.generation.tools import ServerTool, ServerTools, server_tools
from localgem.types.content import FunctionCall, Part
from localgem.types.generation import GenerateContentRequest
from localgem.types.tools import FunctionDeclaration

# Google's rule: a letter or underscore, then letters, digits, _ . : -, at most 64 characters.
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_OBJECT_KEYWORDS = {
    "properties",
    "required",
    "additionalProperties",
    "propertyOrdering",
    "$defs",
    "definitions",
    "title",
    "description",
    "$schema",
}


@dataclass(frozen=True)
class ToolPlan:
    mode: str  # AUTO | ANY | NONE | VALIDATED
    functions: list[tools.Function]  # those the model may call (none in mode NONE)
    #: Tools the server runs itself (see ``generation.tools``).
    server_tools: tuple[ServerTool, ...] = ()

    @property
    def calls_possible(self) -> bool:
        return bool(self.functions)

    def instructions(self) -> str | None:
        """The fallback format's system text (models whose chat template formats tools get ``tools``)."""
        return tools.instructions(self.functions, required=self.mode == "ANY") if self.functions else None

    def rules(self) -> CallRules | None:
        """What the model's calls must be, checked on its output."""
        if not self.functions:
            return None
        return CallRules({f.name: f.parameters for f in self.functions}, required=self.mode == "ANY")

    def constraint(self, args_key: str, limits: JsonLimits = UNBOUNDED) -> ToolCalls | None:
        """What the output may be: calls only in mode ANY; else free text, with calls from ``<tool_call>`` on.
        ``args_key``: "args" in the fallback format, "arguments" for models whose template formats tools
        (the Hermes convention of Qwen and others)."""
        if not self.functions:
            return None
        return ToolCalls(
            functions=tuple(ToolFunction(f.name, f.parameters) for f in self.functions),
            required=self.mode == "ANY",
            open_tag=tools.CALL_OPEN,
            close_tag=tools.CALL_CLOSE,
            args_key=args_key,
            max_calls=tools.MAX_CALLS,
            limits=limits,
        )


def tool_plan(
    body: GenerateContentRequest, prefix: str = "", served: ServerTools | None = None, *, engine: str
) -> ToolPlan | None:
    """What a request's tools mean; ``served``: the server-side tools this server runs (none: all refused);
    ``engine``: the engine of the model (see ``engines.registry``), which must be able to enforce every
    declared function's parameters."""
    used = server_tools(body, served or {}, prefix)
    functions = _declarations(body, prefix, engine)
    calling = body.tool_config.function_calling_config if body.tool_config else None
    if body.tool_config is not None and body.tool_config.retrieval_config is not None:
        raise errors.not_supported(f"{prefix}tool_config.retrieval_config")
    mode = calling.mode if calling and calling.mode not in (None, "MODE_UNSPECIFIED") else "AUTO"
    allowed = calling.allowed_function_names if calling else None
    where = f"{prefix}tool_config.function_calling_config"
    if not functions:
        if mode in ("ANY", "VALIDATED") or allowed:
            raise errors.invalid_field(where, f"{where}: mode {mode} needs tools with function declarations.")
        return ToolPlan(mode, [], used) if used else None
    if allowed:
        if mode not in ("ANY", "VALIDATED"):
            raise errors.invalid_field(
                f"{where}.allowed_function_names",
                "allowedFunctionNames may only be set when the mode is ANY or VALIDATED.",
            )
        unknown = sorted(set(allowed) - {f.name for f in functions})
        if unknown:
            raise errors.invalid_field(
                f"{where}.allowed_function_names", f"allowedFunctionNames names undeclared functions: {unknown}."
            )
        functions = [f for f in functions if f.name in allowed]
    return ToolPlan(mode, [] if mode == "NONE" else functions, used)


def _declarations(body: GenerateContentRequest, prefix: str, engine: str) -> list[tools.Function]:
    functions: list[tools.Function] = []
    for i, tool in enumerate(body.tools or []):
        for j, declaration in enumerate(tool.function_declarations or []):
            functions.append(_function(declaration, f"{prefix}tools[{i}].function_declarations[{j}]", engine))
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise errors.invalid_field(f"{prefix}tools", f"Duplicate function declaration: {duplicate!r}.")
    return functions


def _function(declaration: FunctionDeclaration, where: str, engine: str) -> tools.Function:
    name = declaration.name or ""
    if not _FUNCTION_NAME.fullmatch(name):
        raise errors.invalid_field(
            f"{where}.name",
            f"* GenerateContentRequest.{where}.name: Invalid function name {name!r}. Must start with a letter or an "
            "underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum "
            "length of 64.",
        )
    if declaration.behavior not in (None, "UNSPECIFIED", "BLOCKING"):
        raise errors.not_supported(f"{where}.behavior", f"Function behavior {declaration.behavior}")
    if declaration.parameters is not None and declaration.parameters_json_schema is not None:
        raise errors.invalid_field(f"{where}.parameters", "Set parameters or parametersJsonSchema, not both.")
    try:
        if declaration.parameters is not None:
            parameters = schemas.check_json_schema(
                schemas.google_to_json_schema(declaration.parameters, f"{where}.parameters"), f"{where}.parameters"
            )
        elif declaration.parameters_json_schema is not None:
            parameters = schemas.check_json_schema(
                declaration.parameters_json_schema, f"{where}.parameters_json_schema"
            )
        else:
            parameters = {"type": "object", "properties": {}}
        engine_registry.check_constraint(engine, JsonOutput(parameters))  # enforceable on its own
    except schemas.UnenforceableSchema as exc:
        raise unenforceable(exc, f"{where}.parameters") from None
    if parameters.get("type") != "object" and (parameters.get("type") or set(parameters) - _OBJECT_KEYWORDS):
        raise errors.invalid_field(f"{where}.parameters", f"{where}.parameters must be of type OBJECT.")
    return tools.Function(name, declaration.description or "", anchored_patterns(parameters))


@dataclass(frozen=True)
class CallRules:
    """What a model's calls must be: a declared function each, with arguments valid against its parameters,
    and at least one in mode ANY. localgem's own engines enforce this while generating; an upstream engine's
    tools API may not (llama-server's does not), so every output is checked."""

    parameters: dict[str, dict[str, Any]]
    required: bool
    _validators: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def missing(self, calls: list[tools.ParsedCall], finished: bool) -> str | None:
        """Why no call is a problem (``finished``: the output ended of itself, not at its token limit)."""
        if self.required and finished and not calls:
            return "the model wrote no function call, and mode ANY requires one"
        return None

    def problem(self, call: tools.ParsedCall) -> str | None:
        """Why ``call`` breaks the declarations, if it does."""
        if call.name not in self.parameters:
            return f"the model called {call.name!r}, which is not a declared function"
        validator = self._validators.get(call.name)
        if validator is None:
            schema = self.parameters[call.name]
            validator = self._validators[call.name] = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(call.args))
        return None if error is None else f"the arguments of {call.name!r} are not valid: {error.message}"


def call_parts(
    text: str, response_id: str, index: int, rules: CallRules | None = None, finished: bool = True
) -> tuple[list[Part], str | None]:
    """Output of a request that may call functions → its parts, and what is wrong with its calls (None: they
    are well formed and, with ``rules``, follow them). A call that breaks the declarations is left out: a
    client that runs calls automatically never gets it."""
    before, calls, malformed = tools.split_calls(text)
    problems = [rules.problem(call) for call in calls] if rules is not None else [None] * len(calls)
    kept = [call for call, problem in zip(calls, problems, strict=True) if problem is None]
    parts = [Part(text=before)] if before.strip() or not kept else []
    for n, call in enumerate(kept):
        digest = hashlib.sha256(f"{response_id}/{index}/{n}".encode()).hexdigest()[:16]
        parts.append(Part(function_call=FunctionCall(name=call.name, args=call.args, id=f"call_{digest}")))
    if malformed:
        return parts, "a function call was cut off or is not valid JSON"
    problem = next((p for p in problems if p is not None), None)
    return parts, problem or (rules.missing(calls, finished) if rules is not None else None)
