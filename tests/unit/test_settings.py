from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError

from localgem.serving import tls_certificate
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


def test_tls_certificate_is_made_once_and_configured_files_go_in_pairs(tmp_path) -> None:
    assert tls_certificate(load_settings(environ={}, data_dir=tmp_path)) is None
    with pytest.raises(ValueError, match="go together"):
        tls_certificate(load_settings(environ={}, data_dir=tmp_path, tls_certfile=tmp_path / "c.pem"))
    made = tls_certificate(load_settings(environ={"LOCALGEM_TLS": "true"}, data_dir=tmp_path))
    assert made is not None and made.created and made.keyfile.stat().st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate(made.certfile.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    kept = tls_certificate(load_settings(environ={"LOCALGEM_TLS": "1"}, data_dir=tmp_path))
    assert kept == type(made)(made.certfile, made.keyfile, created=False)
