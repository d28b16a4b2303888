"""Model registry: local models from settings, the catalogue's models over them, and the names Gemini programs
use for them.

The settings' models (and the builtin ones) are the base, fixed for the process. The catalogue's models (added at
run time, kept in the database: see ``catalogue.ModelCatalogue``) are an overlay the catalogue swaps in whole on
each refresh, so that lookups stay synchronous dictionary reads. A base model wins over a catalogue entry with its
id. Aliases, ``default_model`` and ``default_embedding_model`` name base models only: they are checked at start-up.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from localgem import errors
from localgem.models import packaged
from localgem.models.builtin import BUILTIN_MODELS
from localgem.settings import ModelConfig, Settings

DEFAULT_CONTEXT = 8192


GENERATION_METHODS = ("generateContent", "countTokens")
EMBEDDING_METHODS = (
    "embedContent",
    "batchEmbedContents",
    "asyncBatchEmbedContent",
    "countTokens",
    "embedText",
    "batchEmbedText",
)
IMAGE_METHODS = ("predict",)
VIDEO_METHODS = ("predictLongRunning",)
MODEL_METHODS = frozenset(GENERATION_METHODS + EMBEDDING_METHODS + IMAGE_METHODS + VIDEO_METHODS)
_METHODS = {"generate": GENERATION_METHODS, "embed": EMBEDDING_METHODS, "image": IMAGE_METHODS, "video": VIDEO_METHODS}
_KINDS = {
    "generate": "a generative model",
    "embed": "an embedding model",
    "image": "an image model",
    "video": "a video model",
}


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

    @property
    def embeds(self) -> bool:
        return self.config.task == "embed"

    @property
    def chats(self) -> bool:
        """A language model that generates content (not an embedder or an image/video generator)."""
        return self.config.task == "generate"

    @property
    def kind(self) -> str:
        """What the model is, for messages: "a generative model", "an image model"..."""
        return _KINDS[self.config.task]

    @property
    def draws(self) -> bool:
        """An image or video generator (a diffusers pipeline folder), not a language model."""
        return self.config.task in ("image", "video")

    @property
    def methods(self) -> tuple[str, ...]:
        return _METHODS[self.config.task]

    @classmethod
    def from_config(cls, config: ModelConfig) -> ModelEntry:
        context = config.context_length or DEFAULT_CONTEXT
        embeds = config.task != "generate"
        return cls(
            config=config,
            context_length=context,
            input_token_limit=config.input_token_limit or context,
            output_token_limit=config.output_token_limit or (1 if embeds else context // 2),
        )

    def weights(self, data_dir: Path) -> Path:
        if self.config.path is not None:
            return self.checked_path()
        assert self.config.package is not None
        return packaged.locate(self.config.package, data_dir)

    def projector(self) -> Path | None:
        """A vision model's projector (``mmproj``), if it has one."""
        path = self.config.mmproj
        if path is None:
            return None
        if not path.is_file():
            raise errors.FailedPrecondition(f"The vision projector of {self.name} does not exist: {path}")
        return path

    def checked_path(self) -> Path:
        """The ``path`` the model names, if its weights are there."""
        assert self.config.path is not None
        found = self.config.path.exists() if self.embeds or self.draws else self.config.path.is_file()
        if not found:
            what = "pipeline folder" if self.draws else "model" if self.embeds else "GGUF file"
            raise errors.FailedPrecondition(f"The {what} of {self.name} does not exist: {self.config.path}")
        return self.config.path


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        configs = {c.id: c for c in BUILTIN_MODELS} if settings.builtin_models else {}
        configs.update({c.id: c for c in settings.models})  # a user entry with a builtin's id replaces it
        self._entries = {model_id: ModelEntry.from_config(c) for model_id, c in configs.items()}
        self._added: dict[str, ModelEntry] = {}  # the catalogue's, never with a base id; replaced whole
        self._aliases = {
            k.removeprefix("models/"): v.removeprefix("models/") for k, v in settings.model_aliases.items()
        }
        self._patterns = list(settings.alias_patterns)
        # Gemini embedding model names never mean a chat model: they go to the embedding model, or nowhere.
        self._embedding_patterns = list(settings.embedding_alias_patterns)
        self.default_id = settings.default_model
        self.embedding_id = settings.default_embedding_model
        self._drawing = [
            (settings.default_image_model, "image", settings.image_alias_patterns),
            (settings.default_video_model, "video", settings.video_alias_patterns),
        ]
        self.image_id = settings.default_image_model
        named = {self.default_id, *self._aliases.values()}
        for config in configs.values():
            if config.image_model is not None:
                named.add(config.image_model)
        named.update(model_id for model_id, _task, _patterns in self._drawing if model_id is not None)
        if "default_embedding_model" in settings.model_fields_set and self.embedding_id:
            named.add(self.embedding_id)
        elif self.embedding_id not in self._entries:
            self.embedding_id = None  # the builtin one, when builtins are off
        missing = named - self._entries.keys()
        if missing:
            raise ValueError(f"settings name models that are not configured: {', '.join(sorted(missing))}")
        if self._entries[self.default_id].config.task != "generate":
            raise ValueError(
                f"default_model {self.default_id!r} is {self._entries[self.default_id].kind}, not a chat model"
            )
        if self.embedding_id is not None and self._entries[self.embedding_id].config.task != "embed":
            raise ValueError(f"default_embedding_model {self.embedding_id!r} is not an embedding model")
        for model_id, task, _patterns in self._drawing:
            if model_id is not None and self._entries[model_id].config.task != task:
                raise ValueError(f"default_{task}_model {model_id!r} is not a model of task {task!r}")
        for config in configs.values():
            if config.image_model is not None and self._entries[config.image_model].config.task != "image":
                raise ValueError(f"model {config.id!r}: image_model {config.image_model!r} is not an image model")

    def entries(self) -> list[ModelEntry]:
        """The base models in settings order, then the catalogue's by id."""
        return [*self._entries.values(), *self._added.values()]

    def configured(self, model_id: str) -> bool:
        """Whether the settings (or the builtins) define this id: the catalogue cannot take it."""
        return model_id in self._entries

    def set_catalogue(self, configs: list[ModelConfig]) -> list[str]:
        """Replaces the catalogue's models; returns the ids left out because a base model has them."""
        shadowed = sorted(c.id for c in configs if c.id in self._entries)
        added = {c.id: ModelEntry.from_config(c) for c in sorted(configs, key=lambda c: c.id)}
        self._added = {model_id: entry for model_id, entry in added.items() if model_id not in self._entries}
        return shadowed

    def find_exact(self, name: str) -> ModelEntry | None:
        """A local id (base or catalogue) or an explicit alias: names that no catalogue change can redirect."""
        model_id = name.removeprefix("models/")
        if model_id in self._entries:
            return self._entries[model_id]
        if (added := self._added.get(model_id)) is not None:
            return added
        if model_id in self._aliases:
            return self._entries[self._aliases[model_id]]
        return None

    def find(self, name: str) -> ModelEntry | None:
        """A local id, an explicit alias, or a name matching the alias patterns (default model)."""
        if (entry := self.find_exact(name)) is not None:
            return entry
        model_id = name.removeprefix("models/")
        if any(fnmatch.fnmatchcase(model_id, p) for p in self._embedding_patterns):
            return self._entries[self.embedding_id] if self.embedding_id is not None else None
        for drawer, _task, patterns in self._drawing:
            if any(fnmatch.fnmatchcase(model_id, p) for p in patterns):
                return self._entries[drawer] if drawer is not None else None
        if any(fnmatch.fnmatchcase(model_id, p) for p in self._patterns):
            return self._entries[self.default_id]
        return None

    def resolve(self, name: str, method: str) -> ModelEntry:
        entry = self.find(name)
        if entry is None:
            self._refuse_unconfigured_drawer(name)
            full = name if name.startswith("models/") else f"models/{name}"
            raise errors.NotFound(
                f"{full} is not found, or is not supported for {method}. "
                "Call ListModels to see the list of available models and their supported methods."
            )
        if method in MODEL_METHODS and method not in entry.methods:
            raise errors.InvalidArgument(
                f"{entry.name} is {entry.kind} and does not support {method}. It supports: {', '.join(entry.methods)}."
            )
        return entry

    def _refuse_unconfigured_drawer(self, name: str) -> None:
        """Imagen and Veo names when no image or video model is configured: a 400 that says how to serve them."""
        model_id = name.removeprefix("models/")
        for drawer, task, patterns in self._drawing:
            if drawer is None and any(fnmatch.fnmatchcase(model_id, p) for p in patterns):
                raise errors.InvalidArgument(
                    f"models/{model_id} is {task} generation, and this server has no {task} model: configure one "
                    f'(a diffusers pipeline folder, task = "{task}") and name it in the setting default_{task}_model '
                    f"(LOCALGEM_DEFAULT_{task.upper()}_MODEL)."
                )

    def image_model_of(self, entry: ModelEntry) -> ModelEntry | None:
        """The image model that draws a chat model's IMAGE output: its own, else the default one."""
        model_id = entry.config.image_model or self.image_id
        return self._entries.get(model_id) if model_id is not None else None
