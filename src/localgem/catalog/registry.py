"""Model registry: local models from settings, and the names Gemini programs use for them."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from localgem import errors
from localgem.catalog import packaged
from localgem.catalog.builtin import BUILTIN_MODELS
from localgem.settings import ModelConfig, Settings

DEFAULT_CONTEXT = 8192


@dataclass(frozen=True)
class ModelEntry:
    config: ModelConfig
    context_length: int
    input_token_limit: int
    output_token_limit: int

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return f"models/{self.config.id}"

    @classmethod
    def from_config(cls, config: ModelConfig) -> ModelEntry:
        context = config.context_length or DEFAULT_CONTEXT
        return cls(
            config=config,
            context_length=context,
            input_token_limit=config.input_token_limit or context,
            output_token_limit=config.output_token_limit or context // 2,
        )

    def weights(self, data_dir: Path) -> Path:
        if self.config.path is not None:
            if not self.config.path.is_file():
                raise errors.FailedPrecondition(f"The GGUF file of {self.name} does not exist: {self.config.path}")
            return self.config.path
        assert self.config.package is not None
        return packaged.locate(self.config.package, data_dir)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        configs = {c.id: c for c in BUILTIN_MODELS} if settings.builtin_models else {}
        configs.update({c.id: c for c in settings.models})  # a user entry with a builtin's id replaces it
        self._entries = {model_id: ModelEntry.from_config(c) for model_id, c in configs.items()}
        self._aliases = {
            k.removeprefix("models/"): v.removeprefix("models/") for k, v in settings.model_aliases.items()
        }
        self._patterns = list(settings.alias_patterns)
        self._excluded = ["*embedding*"]  # Gemini embedding model names never mean a chat model
        self.default_id = settings.default_model
        missing = {self.default_id, *self._aliases.values()} - self._entries.keys()
        if missing:
            raise ValueError(f"settings name models that are not configured: {', '.join(sorted(missing))}")

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def find(self, name: str) -> ModelEntry | None:
        """A local id, an explicit alias, or a name matching the alias patterns (default model)."""
        model_id = name.removeprefix("models/")
        if model_id in self._entries:
            return self._entries[model_id]
        if model_id in self._aliases:
            return self._entries[self._aliases[model_id]]
        if any(fnmatch.fnmatchcase(model_id, p) for p in self._excluded):
            return None
        if any(fnmatch.fnmatchcase(model_id, p) for p in self._patterns):
            return self._entries[self.default_id]
        return None

    def resolve(self, name: str, method: str) -> ModelEntry:
        entry = self.find(name)
        if entry is None:
            full = name if name.startswith("models/") else f"models/{name}"
            raise errors.NotFound(
                f"{full} is not found, or is not supported for {method}. "
                "Call ListModels to see the list of available models and their supported methods."
            )
        return entry
