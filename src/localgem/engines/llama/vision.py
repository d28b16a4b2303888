"""Images for a vision model through llama.cpp's libmtmd: its projector (``mmproj`` GGUF) turns a picture
into embeddings the text model reads in place of tokens.

A prompt with pictures is tokenized by libmtmd (which adds the model's own image tokens around each
picture); each picture's tokens become placeholders, negative ids made from the picture's digest, so
prompts stay lists of ints: prefix reuse, kept prefixes and token counts work unchanged, and the same
picture in two prompts is the same prefix. ``embeddings`` gives what stands for a run of placeholders.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localgem import errors
from localgem.engines.base import PICTURE_MARKER, Picture

#: Placeholder ids: -(1 + digest48 * _SPAN + i) for the i-th token of a picture.
_SPAN = 1 << 16
_ENCODED_KEPT = 64  # pictures whose embeddings are kept, most recently used first


def placeholder_base(digest: str) -> int:
    return int(digest[:12], 16) * _SPAN


def placeholder(base: int, i: int) -> int:
    return -(1 + base + i)


def picture_of(token: int) -> tuple[int, int]:
    """A placeholder → (its picture's base, its index in the picture's run)."""
    value = -token - 1
    return value - value % _SPAN, value % _SPAN


@dataclass(frozen=True)
class MediaSpan:
    """A picture's run of placeholders in a prompt: tokens [start, start + len(embeddings))."""

    start: int
    embeddings: np.ndarray  # n_tokens x n_embd float32
    non_causal: bool

    @property
    def end(self) -> int:
        return self.start + len(self.embeddings)


def spans_in(tokens: Sequence[int]) -> list[tuple[int, int, int]]:
    """(start, end, base) of each run of one picture's placeholders in ``tokens``."""
    spans: list[tuple[int, int, int]] = []
    i = 0
    while i < len(tokens):
        if tokens[i] >= 0:
            i += 1
            continue
        base, index = picture_of(tokens[i])
        start = i
        while i < len(tokens) and tokens[i] < 0 and picture_of(tokens[i]) == (base, index + i - start):
            i += 1
        spans.append((start, i, base))
    return spans


class Vision:
    """A projector loaded beside a text model (``lc`` and ``model`` from ``native.NativeModel``)."""

    def __init__(self, lc: Any, model: Any, mmproj: Path, *, threads: int, batch_size: int) -> None:
        from llama_cpp import mtmd_cpp

        from localgem.engines.llama.native import native_log_callback

        mtmd_cpp.mtmd_log_set(native_log_callback(), None)
        mtmd_cpp.mtmd_helper_log_set(native_log_callback(), None)
        self._mtmd = mtmd_cpp
        self._lc = lc
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        params.warmup = False
        params.media_marker = PICTURE_MARKER.encode()
        self._marker = params.media_marker  # kept alive: libmtmd copies it, but to be sure
        self._ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), model, params)
        if not self._ctx:
            raise errors.FailedPrecondition(f"llama.cpp could not load the vision projector {mmproj}.")
        if not mtmd_cpp.mtmd_support_vision(self._ctx):
            self.close()
            raise errors.FailedPrecondition(f"{mmproj} is not a vision projector.")
        if mtmd_cpp.mtmd_decode_use_mrope(self._ctx):
            self.close()
            raise errors.FailedPrecondition(
                f"{mmproj}: models with M-RoPE positions (Qwen2-VL, Qwen2.5-VL) are not supported yet."
            )
        self.n_embd = int(lc.llama_model_n_embd(model))
        self._batch_size = batch_size
        self._lock = threading.Lock()  # one libmtmd call at a time: its context holds the last output
        self._encoded: OrderedDict[int, tuple[np.ndarray, bool]] = OrderedDict()

    def close(self) -> None:
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None

    def tokenize(self, text: str, add_bos: bool, pictures: Sequence[Picture]) -> list[int]:
        """``text`` with each PICTURE_MARKER read as the next picture: its tokens, with placeholders.
        Each picture is encoded here (once: its embeddings are kept for ``embeddings``)."""
        if text.count(PICTURE_MARKER) != len(pictures):
            raise errors.Internal("the prompt's picture markers and its pictures do not match")
        mtmd = self._mtmd
        with self._lock:
            bitmaps = []
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                for picture in pictures:
                    pixels = (ctypes.c_ubyte * len(picture.rgb)).from_buffer_copy(picture.rgb)
                    bitmaps.append(mtmd.mtmd_bitmap_init(picture.width, picture.height, pixels))
                data = text.encode("utf-8")
                given = mtmd.mtmd_input_text(data, len(data), add_bos, True)
                array = (ctypes.c_void_p * max(1, len(bitmaps)))(*bitmaps)
                status = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(given), array, len(bitmaps))
                if status != 0:
                    raise errors.InvalidArgument(f"The images could not be prepared for the model (libmtmd {status}).")
                return self._read_chunks(chunks, pictures)
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
                for bitmap in bitmaps:
                    mtmd.mtmd_bitmap_free(bitmap)

    def _read_chunks(self, chunks: Any, pictures: Sequence[Picture]) -> list[int]:
        mtmd = self._mtmd
        tokens: list[int] = []
        seen = 0
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(pointer[j] for j in range(count.value))
                continue
            if kind != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise errors.InvalidArgument("Only images are read by this model's projector.")
            n = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            if n > self._batch_size:
                raise errors.InvalidArgument(f"An image takes {n} tokens here; at most {self._batch_size} fit a batch.")
            base = placeholder_base(pictures[seen].digest)
            seen += 1
            self._encode(chunk, base, n)
            tokens.extend(placeholder(base, j) for j in range(n))
        return tokens

    def _encode(self, chunk: Any, base: int, n: int) -> None:
        if base in self._encoded:
            self._encoded.move_to_end(base)
            return
        mtmd = self._mtmd
        if mtmd.mtmd_encode_chunk(self._ctx, chunk) != 0:
            raise errors.InvalidArgument("The vision projector could not encode an image.")
        out = mtmd.mtmd_get_output_embd(self._ctx)
        embeddings = np.ctypeslib.as_array(out, shape=(n * self.n_embd,)).reshape(n, self.n_embd).copy()
        self._encoded[base] = (embeddings, bool(mtmd.mtmd_decode_use_non_causal(self._ctx, chunk)))
        if len(self._encoded) > _ENCODED_KEPT:
            self._encoded.popitem(last=False)

    def media(self, tokens: Sequence[int]) -> list[MediaSpan]:
        """The embeddings for each picture in a tokenized prompt. A picture tokenized so long ago that its
        embeddings were let go is an error the client may retry (it is encoded again then)."""
        spans = []
        with self._lock:
            for start, end, base in spans_in(tokens):
                kept = self._encoded.get(base)
                if kept is None or len(kept[0]) != end - start:
                    raise errors.Unavailable("An image of this request was evicted before it ran; please retry.")
                spans.append(MediaSpan(start, kept[0], kept[1]))
        return spans
