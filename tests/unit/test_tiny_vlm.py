"""The tiny random-weight VLM of tests/tiny_vlm.py: same bytes each time, and libmtmd loads and runs it."""

from __future__ import annotations

import hashlib

import pytest

pytest.importorskip("gguf")

from tests.tiny_vlm import N_IMAGE_TOKENS, check, make_tiny_vlm  # noqa: E402


def test_made_twice_byte_for_byte(tmp_path):
    first = make_tiny_vlm(tmp_path / "a")
    second = make_tiny_vlm(tmp_path / "b")
    for one, other in zip(first, second, strict=True):
        assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(other.read_bytes()).digest()
    assert sum(path.stat().st_size for path in first) < 30_000_000


def test_images_encode_and_decode(tmp_path):
    text_path, mmproj_path = make_tiny_vlm(tmp_path)
    seen = check(text_path, mmproj_path)
    assert seen["image_tokens"] == N_IMAGE_TOKENS
    assert seen["non_causal"] is True  # a gemma3 projector: bidirectional attention over an image
    assert seen["mrope"] is False
    assert [kind for kind, _ in seen["layout"]] == ["text", "image", "text"]
    assert seen["n_past"] == seen["n_tokens"]
