"""A trained LoRA (peft's tensors) → a GGUF LoRA adapter that llama.cpp applies over the quantized base model
(``llama_adapter_lora_init``), written as llama.cpp's own ``convert_lora_to_gguf.py`` writes one.

Names follow llama.cpp's tensor map (``blk.N.attn_q.weight.lora_a`` …). peft keeps A as (rank, in) and B as
(out, rank), which is what llama.cpp reads. One twist: llama.cpp's converter permutes the rows of a llama
model's q and k projections (its rope kernel wants the halves interleaved) and transformers undoes that when it
loads a GGUF, so the model trained here sees them unpermuted: B's rows of q and k are permuted back the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: HF module name → llama.cpp tensor name, for the architectures whose GGUF loading in transformers keeps these.
MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
#: The base architectures a tuned model may have, and whether their q/k rows are permuted in GGUF.
ARCHITECTURES = {"llama": True, "qwen2": False}
_KEY = re.compile(r"(?:.*\.)?layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])(?:\.default)?\.weight$")


def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py), over the rows of ``weights``."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def adapter_tensors(
    state: Mapping[str, np.ndarray], architecture: str, n_head: int, n_head_kv: int
) -> dict[str, np.ndarray]:
    """peft's LoRA state (``get_peft_model_state_dict``, as numpy) → GGUF tensor names and arrays."""
    permuted = ARCHITECTURES[architecture]
    tensors: dict[str, np.ndarray] = {}
    for key, value in state.items():
        found = _KEY.match(key)
        if found is None or found.group(2) not in MODULES:
            raise ValueError(f"unexpected LoRA tensor {key}")
        layer, module, half = int(found.group(1)), found.group(2), found.group(3)
        array = np.ascontiguousarray(value, dtype=np.float32)
        if half == "B" and permuted and module in ("self_attn.q_proj", "self_attn.k_proj"):
            array = np.ascontiguousarray(permute(array, n_head, n_head if module == "self_attn.q_proj" else n_head_kv))
        tensors[f"blk.{layer}.{MODULES[module]}.weight.lora_{half.lower()}"] = array
    return tensors


def write_adapter(path: Path, tensors: Mapping[str, np.ndarray], architecture: str, alpha: float) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def base_shape(gguf_path: Path) -> tuple[str, int, int]:
    """A GGUF model's architecture and its attention head counts (q, kv). Read once per file version: gguf's
    reader parses every metadata array (the whole vocabulary), which takes seconds."""
    info = gguf_path.stat()
    return _base_shape(str(gguf_path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _base_shape(gguf_path: str, _size: int, _mtime_ns: int) -> tuple[str, int, int]:
    import gguf

    reader = gguf.GGUFReader(gguf_path)

    def value(key: str) -> object:
        field = reader.get_field(key)
        if field is None:
            raise ValueError(f"{gguf_path.name} has no {key}")
        return field.contents()

    architecture = str(value("general.architecture"))
    n_head = int(value(f"{architecture}.attention.head_count"))  # type: ignore[arg-type]
    kv = reader.get_field(f"{architecture}.attention.head_count_kv")
    return architecture, n_head, int(kv.contents()) if kv is not None else n_head
