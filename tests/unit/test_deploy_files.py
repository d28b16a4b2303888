"""The deployment files (deploy/) are checked against what they configure: every LOCALGEM_* variable they set is
a setting localgem reads, and the values validate as settings; HAProxy accepts its configuration; the image
builds llama.cpp with the Makefile's CPU flags. (No container runtime or cluster runs in CI: the images and
manifests themselves are not started here.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from localgem.settings import ENV_PREFIX, Settings, load_settings

DEPLOY = Path(__file__).parents[2] / "deploy"


def check_environment(environment: dict[str, str], tmp_path: Path) -> Settings:
    unknown = sorted(
        k for k in environment if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() not in Settings.model_fields
    )
    assert not unknown, f"settings localgem does not have: {unknown}"
    return load_settings(environ={**environment, "LOCALGEM_DATA_DIR": str(tmp_path)})


def test_the_compose_files_replicas_are_configured_with_real_settings(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [name for name, service in services.items() if service.get("image") == "localgem:cpu"]
    assert len(replicas) >= 2
    settings = check_environment({k: str(v) for k, v in services[replicas[0]]["environment"].items()}, tmp_path)
    (model,) = [m for m in settings.models if m.id == settings.default_model]
    assert model.engine == "openai" and model.base_url.startswith("http://vllm:")
    assert settings.blob_url.startswith("s3://") and settings.database_url.startswith("postgresql://")
    assert {"postgres", "seaweedfs", "vllm", "proxy"} <= set(services)


def test_the_kubernetes_manifests_configure_real_settings(tmp_path: Path) -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "localgem.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    environment = {**kinds["Secret"]["stringData"], **kinds["ConfigMap"]["data"]}
    settings = check_environment(environment, tmp_path)
    assert settings.models[0].engine == "openai" and settings.quotas
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    vllm = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "k8s" / "vllm.yaml").read_text())}
    assert vllm["Service"]["metadata"]["name"] in settings.models[0].base_url


def test_haproxy_accepts_its_configuration() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    checked = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_cpu_image_builds_llama_cpp_with_the_makefiles_flags() -> None:
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    flags = re.search(r"LLAMA_CMAKE_ARGS := (.*?)\n(?!\t)", makefile, re.S).group(1).replace("\\\n\t", "").split()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cpu = re.search(r'FROM debian:bookworm-slim AS build-cpu\nENV CMAKE_ARGS="([^"]*)"', dockerfile).group(1).split()
    assert cpu == flags
