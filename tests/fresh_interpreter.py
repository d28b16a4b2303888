"""Code run in a new Python process, for measurements a long-lived test process would blur: there other threads
map and free memory between snapshots, and glibc may serve a large block from free heap it already holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(code: str) -> str:
    """Runs ``code`` (``python -c``, the repository importable) in a new interpreter; returns what it printed and
    fails the calling test where it fails."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=environ)
    assert done.returncode == 0, done.stderr
    return done.stdout
