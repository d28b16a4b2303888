"""Kept KV state names the attention mode that computed it: the three modes, and the invariant flash mode's K and V
types, round differently (and the invariant modes' K-quant products round otherwise than they did before 2026-12-06,
with repacked weights)."""

from __future__ import annotations

import os

import pytest

from localgem.engines.llama import library
from localgem.engines.llama.native import attention_mode


def test_each_attention_mode_has_its_own_name() -> None:
    def mode(flash_attention: bool = True, batch_invariant: bool = True, key_type: str = "f16") -> str:
        return attention_mode(flash_attention=flash_attention, batch_invariant=batch_invariant, key_type=key_type)

    assert mode() == "flash attention, f16 K and V, prompts tiled past 56 cells, dot products"  # the defaults
    assert mode(key_type="q8_0") == "flash attention, q8_0 K, bf16 V, dot products"  # the default before 2026-12-07
    assert mode(key_type="f16 bf16") == "flash attention, bf16 V, dot products"  # the name before q8_0 K
    # f16 V (and f16 K, whatever is set): the name files of that mode always had
    assert mode(batch_invariant=False) == mode(batch_invariant=False, key_type="f16") == "flash attention"
    plain = mode(flash_attention=False)
    assert plain == mode(flash_attention=False, batch_invariant=False) == "plain attention, dot products"
    assert mode(flash_attention=False, key_type="f16") == plain


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
