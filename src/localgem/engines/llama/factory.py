"""The llama.cpp engine's factory (``engines.registry``): settings → a loader of GGUF models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from localgem.engines.llama.prefixes import PrefixStore, prefix_file

if TYPE_CHECKING:
    from localgem.engines.llama.engine import LlamaCppEngine
    from localgem.models.registry import ModelEntry
    from localgem.settings import Settings


def llama_cpp_factory(settings: Settings) -> Callable[[ModelEntry], LlamaCppEngine]:
    def load(entry: ModelEntry) -> LlamaCppEngine:
        from localgem.engines.llama.engine import LlamaCppEngine  # loads libllama
        from localgem.engines.llama.library import llama_build

        return LlamaCppEngine(
            entry.weights(settings.data_dir),
            context_length=entry.context_length,
            threads=settings.threads,
            slots=settings.slots,
            max_queue=settings.max_queue,
            prefill_chunk=settings.prefill_chunk,
            flash_attention=settings.flash_attention,
            batch_invariant=settings.batch_invariant,
            key_type=settings.cache_type_k,
            sliding_window_full=settings.sliding_window_full,
            niceness=settings.inference_niceness,
            reuse_prefixes=entry.config.reuse_prefixes,
            repetition_stop=settings.repetition_stop_tokens,
            mmproj=entry.projector(),
            prefixes=PrefixStore(
                kept_prefix_dir(settings, entry.id),
                ram_bytes=settings.cache_ram_bytes,
                disk_bytes=settings.cache_disk_bytes,
                # States are read only where they were computed alike (the engine names its attention mode).
                build=llama_build(),
            ),
        )

    return load


def kept_prefix_dir(settings: Settings, model_id: str) -> Path:
    """Where a model's kept prefixes are on disk (they outlive a restart)."""
    return settings.data_dir / "kv" / model_id


def forget_kept_prefix(settings: Settings, model_id: str, key: str) -> None:
    """Forgets a prefix a model that is not loaded kept (a loaded one's engine does: ``drop_prefix``)."""
    prefix_file(kept_prefix_dir(settings, model_id), key).unlink(missing_ok=True)
