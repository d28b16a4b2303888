"""The embedding engine's factory (``engines.registry``): settings → a loader of embedding models."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from localgem.engines.embedding.engine import EmbeddingBatcher, load_embedder

if TYPE_CHECKING:
    from localgem.models.registry import ModelEntry
    from localgem.settings import Settings


def embedder_factory(settings: Settings) -> Callable[[ModelEntry], EmbeddingBatcher]:
    def load(entry: ModelEntry) -> EmbeddingBatcher:
        config = entry.config
        embedder = load_embedder(
            entry.weights(settings.data_dir),
            max_tokens=config.input_token_limit or config.context_length,
            batch_size=settings.embedding_batch_size,
            threads=settings.threads,
        )
        return EmbeddingBatcher(embedder, max_texts=settings.embedding_batch_size * 16)

    return load
