from __future__ import annotations

from pathlib import Path

import pytest

from localgem import errors
from localgem.models.registry import ModelRegistry
from localgem.settings import ModelConfig, load_settings


def registry(**overrides) -> ModelRegistry:
    return ModelRegistry(load_settings(environ={}, **overrides))


def test_builtin_models_and_limits() -> None:
    entries = {e.id: e for e in registry().entries()}
    assert set(entries) == {"smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"}
    assert entries["all-minilm-l6-v2"].input_token_limit == 256 and entries["all-minilm-l6-v2"].embeds
    assert entries["gemma-3-270m"].context_length == 8192 and entries["gemma-3-270m"].output_token_limit == 4096


@pytest.mark.parametrize(
    "name", ["gemini-2.5-flash", "models/gemini-2.5-pro", "gemini-flash-latest", "gemini-3.8-flash", "gemma-3-27b-it"]
)
def test_gemini_names_resolve_to_the_default_model(name: str) -> None:
    assert registry().resolve(name, "generateContent").id == "smollm2-135m-instruct"


def test_local_ids_and_explicit_aliases_win() -> None:
    reg = registry(model_aliases={"gemini-2.5-pro": "gemma-3-270m"})
    assert reg.resolve("models/gemma-3-270m", "generateContent").id == "gemma-3-270m"
    assert reg.resolve("gemini-2.5-pro", "generateContent").id == "gemma-3-270m"
    assert reg.resolve("gemini-2.5-flash", "generateContent").id == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    "name", ["gemini-embedding-001", "models/text-embedding-004", "embedding-001", "embedding-gecko-001"]
)
def test_embedding_names_resolve_to_the_embedding_model(name: str) -> None:
    assert registry().resolve(name, "embedContent").id == "all-minilm-l6-v2"


def test_methods_a_model_does_not_support_are_400s_naming_its_methods() -> None:
    with pytest.raises(errors.InvalidArgument, match="supports: embedContent, batchEmbedContents"):
        registry().resolve("gemini-embedding-001", "generateContent")
    with pytest.raises(errors.InvalidArgument, match="supports: generateContent, countTokens"):
        registry().resolve("gemini-2.5-flash", "embedContent")
    assert registry().resolve("gemini-embedding-001", "countTokens").id == "all-minilm-l6-v2"


def test_without_builtins_embedding_names_are_not_found_unless_configured(tmp_path: Path) -> None:
    reg = registry(
        builtin_models=False, models=[{"id": "mine", "path": str(tmp_path / "m.gguf")}], default_model="mine"
    )
    with pytest.raises(errors.NotFound):
        reg.resolve("gemini-embedding-001", "embedContent")
    with pytest.raises(ValueError, match="not configured: nope"):
        registry(default_embedding_model="nope")
    with pytest.raises(ValueError, match="is not an embedding model"):
        registry(default_embedding_model="gemma-3-270m")
    with pytest.raises(ValueError, match="is an embedding model"):
        registry(default_model="all-minilm-l6-v2")


@pytest.mark.parametrize("name", ["custom-gemini-2.0-flash", "gpt-4o", "models/"])
def test_other_names_are_not_found(name: str) -> None:
    with pytest.raises(errors.NotFound, match="is not found, or is not supported for generateContent"):
        registry().resolve(name, "generateContent")


def test_user_gguf_by_path_and_missing_file(tmp_path: Path) -> None:
    reg = registry(models=[{"id": "mine", "path": str(tmp_path / "none.gguf")}], default_model="mine")
    entry = reg.resolve("gemini-2.5-flash", "generateContent")
    assert entry.id == "mine"
    with pytest.raises(errors.FailedPrecondition, match="does not exist"):
        entry.weights(tmp_path)


def test_settings_naming_unknown_models_fail_at_start() -> None:
    with pytest.raises(ValueError, match="not configured: nope"):
        registry(default_model="nope")


def test_catalogue_models_overlay_the_settings_models(tmp_path: Path) -> None:
    reg = registry(models=[{"id": "mine", "path": str(tmp_path / "m.gguf"), "display_name": "settings"}])
    shadowed = reg.set_catalogue(
        [
            ModelConfig(id="tuned-b", path=tmp_path / "b.gguf"),
            ModelConfig(id="gemma-tuned", path=tmp_path / "g.gguf"),
            ModelConfig(id="mine", path=tmp_path / "other.gguf", display_name="catalogue"),
        ]
    )
    assert shadowed == ["mine"]  # the settings' model wins
    ids = [e.id for e in reg.entries()]
    assert ids == ["smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2", "mine", "gemma-tuned", "tuned-b"]
    assert reg.resolve("models/mine", "generateContent").config.display_name == "settings"
    assert reg.resolve("tuned-b", "generateContent").id == "tuned-b"
    # A catalogue id beats the alias patterns it matches, as a settings id does.
    assert reg.find_exact("gemma-tuned").id == reg.resolve("gemma-tuned", "generateContent").id == "gemma-tuned"
    assert reg.find_exact("gemini-2.5-flash") is None and reg.find("gemini-2.5-flash").id == "smollm2-135m-instruct"
    assert reg.configured("mine") and not reg.configured("tuned-b")

    assert reg.set_catalogue([]) == []
    with pytest.raises(errors.NotFound):
        reg.resolve("tuned-b", "generateContent")
    assert reg.resolve("gemma-tuned", "generateContent").id == "smollm2-135m-instruct"  # back to the pattern
