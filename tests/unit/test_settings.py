from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from localgem.settings import load_settings


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert (settings.host, settings.port, settings.api_keys) == ("127.0.0.1", 8080, [])
    assert settings.max_request_bytes == 20 * 1024 * 1024
    assert settings.default_model == "smollm2-135m-instruct"


def test_env_vars_with_comma_lists_and_json(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "LOCALGEM_API_KEYS": "k1, k2",
            "LOCALGEM_PORT": "9000",
            "LOCALGEM_DATA_DIR": str(tmp_path),
            "LOCALGEM_MODELS": '[{"id": "mine", "path": "/m.gguf"}]',
            "LOCALGEM_MODEL_ALIASES": '{"gemini-2.5-pro": "mine"}',
        }
    )
    assert settings.api_keys == ["k1", "k2"] and settings.port == 9000 and settings.data_dir == tmp_path
    assert settings.models[0].id == "mine" and settings.model_aliases == {"gemini-2.5-pro": "mine"}


def test_toml_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "localgem.toml"
    config.write_text(
        'port = 7000\nhost = "0.0.0.0"\napi_keys = ["from-file"]\n'
        '[[models]]\nid = "custom"\npath = "/x.gguf"\ncontext_length = 2048\n'
    )
    settings = load_settings(environ={"LOCALGEM_CONFIG": str(config), "LOCALGEM_PORT": "7001"}, host="127.0.0.2")
    assert (settings.host, settings.port, settings.api_keys) == ("127.0.0.2", 7001, ["from-file"])
    assert settings.models[0].context_length == 2048


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        load_settings(environ={"LOCALGEM_PORT": "not-a-port"})
    with pytest.raises(ValidationError, match="exactly one of 'path' or 'package'"):
        load_settings(environ={"LOCALGEM_MODELS": '[{"id": "x"}]'})
    with pytest.raises(ValidationError, match="model ids"):
        load_settings(environ={"LOCALGEM_MODELS": '[{"id": "Bad Id", "path": "/x"}]'})
