"""Which engine runs a model: ``ModelConfig.engine`` names one of ``ENGINES``.

Each engine is found by import path and imported only when it is first needed (a model of its kind
is loaded, or a request's constraint is checked against it), so that importing the app, or creating
it, loads no native library (llama.cpp, PyTorch). Adding an engine is adding a package under
``engines/`` and a line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from localgem.engines.base import OutputConstraint, UnenforceableSchema

if TYPE_CHECKING:  # typing only: engines know settings and models by their types, nothing more
    from localgem.models.registry import ModelEntry
    from localgem.settings import Settings

Task = Literal["generate", "embed", "image", "video"]


@dataclass(frozen=True)
class EngineKind:
    #: What its models do: generate text (an ``engines.base.Engine``), embed it, draw images or videos.
    tasks: tuple[Task, ...]
    #: ``module:function``; ``function(settings)`` returns the loader of its models (``ModelEntry`` → engine).
    factory: str
    #: ``module:function``; ``function(constraint)`` raises ``UnenforceableSchema`` if the engine cannot
    #: enforce the constraint, before any model is loaded. None: it constrains nothing.
    constraints: str | None = None
    #: ``module:function``; ``function(settings, model_id, key)`` forgets a prefix a model that is not
    #: loaded kept (on disk) under ``key``. None: its engine keeps none.
    forget_prefix: str | None = None
    description: str = ""


ENGINES: Mapping[str, EngineKind] = MappingProxyType(
    {
        "llama.cpp": EngineKind(
            ("generate",),
            "localgem.engines.llama.factory:llama_cpp_factory",
            "localgem.engines.llama.constraints:check_constraint",
            "localgem.engines.llama.factory:forget_kept_prefix",
            "GGUF models on llama.cpp, CPU, continuous batching, grammar-constrained output",
        ),
        "openai": EngineKind(
            ("generate", "embed"),
            "localgem.engines.openai.engine:openai_factory",
            "localgem.engines.openai.engine:check_constraint",
            description="another server's OpenAI-compatible API (llama-server, vLLM, SGLang, Ollama, LocalAI): "
            "token ids in, its own guided decoding, its prefix cache; /v1/embeddings for embedding models",
        ),
        "embedding": EngineKind(
            ("embed",),
            "localgem.engines.embedding.factory:embedder_factory",
            description="sentence-transformers model folders (PyTorch), or embedding GGUF files (llama.cpp)",
        ),
        "diffusers": EngineKind(
            ("image", "video"),
            "localgem.engines.diffusion.factory:diffusion_factory",
            description="diffusers pipeline folders (PyTorch, CPU): Stable Diffusion 1.x/2.x/XL, SD-Turbo, "
            "text-to-video pipelines",
        ),
    }
)
#: The engine of a model whose config names none, by task.
DEFAULT_ENGINES: Mapping[Task, str] = MappingProxyType(
    {"generate": "llama.cpp", "embed": "embedding", "image": "diffusers", "video": "diffusers"}
)


def engine_kind(name: str, task: Task) -> EngineKind:
    """The engine called ``name``; ValueError, naming the known ones, if there is none for ``task``."""
    kind = ENGINES.get(name)
    if kind is None:
        known = ", ".join(f"{engine!r} ({'/'.join(kind.tasks)})" for engine, kind in ENGINES.items())
        raise ValueError(f"unknown engine {name!r}; the engines are {known}")
    if task not in kind.tasks:
        raise ValueError(f"engine {name!r} runs {'/'.join(kind.tasks)} models, not {task} models")
    return kind


def model_loader(settings: Settings, task: Task) -> Callable[[ModelEntry], Any]:
    """Loads each model with the engine its config names; each engine's factory is imported on first use."""
    loaders: dict[str, Callable[[ModelEntry], Any]] = {}

    def load(entry: ModelEntry) -> Any:
        name = entry.config.engine
        if name not in loaders:
            loaders[name] = _imported(engine_kind(name, task).factory)(settings)
        return loaders[name](entry)

    return load


def check_constraint(engine: str, constraint: OutputConstraint) -> None:
    """Raises ``UnenforceableSchema`` if the engine ``engine`` cannot enforce ``constraint`` (a model's own
    check, once it is loaded, is ``Engine.check_constraint``)."""
    check = ENGINES[engine].constraints
    if check is None:
        raise UnenforceableSchema(None, f"the {engine} engine cannot constrain its output")
    _imported(check)(constraint)


def forget_kept_prefix(settings: Settings, model_id: str, key: str) -> None:
    """Forgets what any engine kept under ``key`` for a model that is not loaded (nor, maybe, configured)."""
    for kind in ENGINES.values():
        if kind.forget_prefix is not None:
            _imported(kind.forget_prefix)(settings, model_id, key)


def _imported(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
