"""Tests that run code in the real sandbox need bubblewrap: CI installs it (and sets
LOCALGEM_REQUIRE_SANDBOX, so that a machine without it fails rather than skips)."""

from __future__ import annotations

import os

import pytest

from localgem.sandbox.runner import Sandbox


def _unavailable() -> str | None:
    return Sandbox(warm=0).probe()


REASON = _unavailable()

requires_sandbox = pytest.mark.skipif(
    REASON is not None and not os.environ.get("LOCALGEM_REQUIRE_SANDBOX"),
    reason=f"no sandbox here: {REASON}",
)
