"""Wire types: the JSON messages of the Gemini API, as pydantic models (see ``wire`` for the mapping)."""
