"""``dynamic/{id}:generateContent`` and ``:streamGenerateContent``.

Google's discovery document lists a ``dynamic`` collection with only these two methods, taking and returning
exactly what ``models/{id}:generateContent`` does, and documents nothing else about it: no ``dynamic.get`` or
``list``, no resource schema. The ids are opaque names that Google's servers resolve to a model (endpoints whose
model is chosen server-side, e.g. for AI Studio apps), so a client only ever holds an id someone gave it.

localgem has no separate dynamic endpoints: ``dynamic/{id}`` resolves the id as ``models/{id}`` does (a local
model's id, or any alias or Gemini name this server maps to one), then runs generateContent or
streamGenerateContent on that model, with everything those methods do (streaming framings, cached contents,
tools, limits). An id that names no model is ``dynamic/{id}`` not found (404).
"""

from __future__ import annotations

from localgem import errors
from localgem.models.service import ModelService


async def resolve(models: ModelService, dynamic_id: str) -> str:
    """The local model id ``dynamic/{id}`` stands for."""
    try:
        found = await models.get(dynamic_id)
    except errors.NotFound:
        raise errors.NotFound(f"dynamic/{dynamic_id[:200]} is not found.") from None
    assert found.name is not None
    return found.name.removeprefix("models/")
