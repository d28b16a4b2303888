"""Importing localgem, and creating its app, loads no native inference library: engines are imported
when a model is loaded (see ``engines.registry``), not before."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: Libraries that load model runtimes (libllama, libtorch, ONNX Runtime) or pull them in.
NATIVE = ("llama_cpp", "torch", "onnxruntime", "sentence_transformers", "transformers")


def loaded_after(code: str, tmp_path: Path) -> list[str]:
    """The NATIVE modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({list(NATIVE)!r}))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_app_and_the_cli_loads_no_native_library(tmp_path: Path) -> None:
    assert loaded_after("import localgem.app, localgem.cli, localgem.engines.registry", tmp_path) == []


def test_creating_the_app_loads_no_native_library(tmp_path: Path) -> None:
    code = f"""
        from localgem.app import create_app
        from localgem.settings import load_settings

        settings = load_settings(environ={{}}, data_dir={str(tmp_path)!r}, api_keys=["k"])
        app = create_app(settings)
        assert app.state.preload == ["smollm2-135m-instruct"]
        """
    assert loaded_after(code, tmp_path) == []


def test_the_probe_sees_llama_cpp_once_an_engine_needs_it(tmp_path: Path) -> None:
    """The checks above would pass if the probe saw nothing: a constraint checked by llama.cpp's rules is seen."""
    code = """
        from localgem.engines.base import JsonOutput
        from localgem.engines.registry import check_constraint

        check_constraint("llama.cpp", JsonOutput({"type": "string"}))
        """
    assert loaded_after(code, tmp_path) == ["llama_cpp"]
