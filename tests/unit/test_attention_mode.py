"""Kept KV state names the attention mode that computed it: the three modes, and the invariant flash mode's two K
types, round differently (and the invariant modes' K-quant products round otherwise than they did before 2026-12-06,
with repacked weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localgem.engines.llama import library
from localgem.engines.llama.factory import attention_mode
from localgem.settings import load_settings


def test_each_attention_mode_has_its_own_name(tmp_path: Path) -> None:
    def mode(**environ: str) -> str:
        return attention_mode(
            load_settings(environ={f"LOCALGEM_{k.upper()}": v for k, v in environ.items()}, data_dir=tmp_path)
        )

    assert mode() == "flash attention, bf16 V, dot products"  # the defaults
    assert mode(cache_type_k="q8_0") == "flash attention, q8_0 K, bf16 V, dot products"
    assert mode(batch_invariant="false") == "flash attention"  # f16 V: the name files of that mode always had
    assert mode(batch_invariant="false", cache_type_k="q8_0") == "flash attention"  # K f16 there whatever is set
    plain = mode(flash_attention="false")
    assert plain == mode(flash_attention="false", batch_invariant="false") == "plain attention, dot products"
    assert mode(flash_attention="false", cache_type_k="q8_0") == plain


def test_the_first_choice_of_matmul_kernels_holds_for_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """ggml reads its tiled-kernel switch once per process: the first choice is set, a later other one told."""
    monkeypatch.setenv(library.TILED_MATMUL_SWITCH, "1")  # restored, whatever the choices below write
    monkeypatch.delenv(library.TILED_MATMUL_SWITCH)
    monkeypatch.setattr(library, "_matmul_choice", {})
    assert library.choose_matmul_kernels(batch_invariant=False)  # llama.cpp's kernels, as llama-server runs
    assert library.TILED_MATMUL_SWITCH not in os.environ
    assert not library.choose_matmul_kernels(batch_invariant=True)  # too late for a model that needs one kernel

    monkeypatch.setattr(library, "_matmul_choice", {})
    assert library.choose_matmul_kernels(batch_invariant=True)
    assert os.environ[library.TILED_MATMUL_SWITCH] == "0"
    assert library.choose_matmul_kernels(batch_invariant=False)  # loses a kernel, not a promise
    assert os.environ[library.TILED_MATMUL_SWITCH] == "0"
