"""Kept KV state names the attention mode that computed it: the three modes round differently (and the invariant
modes' K-quant products round otherwise than they did before 2026-12-06, with repacked weights)."""

from __future__ import annotations

from pathlib import Path

from localgem.engines.llama.factory import attention_mode
from localgem.settings import load_settings


def test_each_attention_mode_has_its_own_name(tmp_path: Path) -> None:
    def mode(**environ: str) -> str:
        return attention_mode(
            load_settings(environ={f"LOCALGEM_{k.upper()}": v for k, v in environ.items()}, data_dir=tmp_path)
        )

    assert mode() == "flash attention, bf16 V, dot products"  # the defaults
    assert mode(batch_invariant="false") == "flash attention"  # f16 V: the name files of that mode always had
    plain = mode(flash_attention="false")
    assert plain == mode(flash_attention="false", batch_invariant="false") == "plain attention, dot products"
