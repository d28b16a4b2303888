"""A thin, typed layer over llama-cpp-python's C bindings: one model, one context, one batch.

Only the scheduler thread may call the methods that touch the context (``decode``, ``logits``,
``seq_*``, samplers, ``piece``); ``tokenize`` only reads the vocabulary and is safe anywhere.
``NativeModel`` is the scheduler's ``decoder.Decoder``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from localgem import errors
from localgem.engines.base import ModelInfo, SamplingParams, StepLogprobs, TokenLogprob
from localgem.engines.llama.constraints import Grammar
from localgem.engines.llama.decoder import PROMPT_CELLS_MULTIPLE, BatchItem, lone_rows, padded_end
from localgem.engines.llama.library import choose_matmul_kernels
from localgem.engines.llama.sampler import Sampler
from localgem.engines.llama.vision import Vision
from localgem.zeroed_pages import Mappings, hand_back_zeroed_buffers

log = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_state: dict[str, object] = {}
_kept_lines = threading.local()  # see ``native_lines``
_making_context = threading.Lock()
#: The line llama.cpp logs for each KV cache buffer it allocates.
_KV_BUFFER_LINE = re.compile(r"KV buffer size =\s*([0-9.]+) MiB")
_NATIVE_ERROR = 4  # ggml_log_level: 1 debug, 2 info, 3 warn (mostly model quirks), 4 error, 5 continuation
_FLASH_ATTENTION = {False: 0, True: 1}  # llama_flash_attn_type: -1 auto, 0 off, 1 on
#: KV cache types by name (enum ggml_type: llama-cpp-python names only some of its members; ``bench/llama_batch.py``
#: makes its contexts with them too).
GGML_TYPES = {"f16": 1, "q8_0": 8, "bf16": 30}
#: llama.cpp's CPU flash attention reads the rows of a stream with its tiled kernel in calls of at least this many
#: rows a stream (``GGML_FA_TILE_Q``), with K and V both f16.
TILE_ROWS = 64
#: Where prompts are tiled, a prompt call that ends within this many cells is read in one pass, with no filler rows
#: but to the next multiple of PROMPT_CELLS_MULTIPLE cells (which keeps it under TILE_ROWS rows).
ONE_PASS_CELLS = TILE_ROWS - PROMPT_CELLS_MULTIPLE
#: A lone decode row from this position on attends over a view of 512 cells or more (llama.cpp pads a stream's view
#: to a multiple of 256 cells), where llama.cpp's flash attention splits its cells across threads (f16 K and V).
SPLIT_FROM_POSITION = 256
#: LoRA adapters kept loaded per model (the least recently used beyond this is freed; loading one again is a
#: read of a few MB).
MAX_ADAPTERS = 16
#: The scratch buffer sequence states are serialised into is kept up to this size.
SCRATCH_KEPT_BYTES = 64 << 20


def _llama() -> Any:  # imported lazily: loading the shared library is work, not for import time
    import llama_cpp

    return llama_cpp


def _init_backend() -> None:
    """Once per process: route llama.cpp's native log lines into logging, start its backend."""
    with _backend_lock:
        if _backend_state:
            return
        lc = _llama()
        native = logging.getLogger("localgem.llama_cpp.native")

        @lc.llama_log_callback
        def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            line = text.decode("utf-8", "replace").rstrip()
            kept = getattr(_kept_lines, "lines", None)
            if kept is not None:
                kept.append(line)
            native.log(logging.ERROR if level == _NATIVE_ERROR else logging.DEBUG, "%s", line)

        _backend_state["log_callback"] = forward  # ctypes callbacks must outlive their registration
        lc.llama_log_set(forward, ctypes.c_void_p(0))
        lc.llama_backend_init()


@contextlib.contextmanager
def native_lines() -> Iterator[list[str]]:
    """The lines llama.cpp logs from this thread inside the block, whatever the log level."""
    _init_backend()
    _kept_lines.lines = lines = []
    try:
        yield lines
    finally:
        _kept_lines.lines = None


def native_log_callback() -> object:
    """The callback that routes llama.cpp's log lines into logging (libmtmd takes it too)."""
    _init_backend()
    return _backend_state["log_callback"]


def tokenize_with(lc: Any, vocab: Any, text: str, add_bos: bool, special: bool = True) -> list[int]:
    """llama.cpp's tokenizer over ``vocab``; ``special``: text such as ``<|im_start|>`` is that token."""
    data = text.encode("utf-8")
    capacity = len(data) + 8
    tokens = (lc.llama_token * capacity)()
    n = lc.llama_tokenize(vocab, data, len(data), tokens, capacity, add_bos, special)
    if n < 0:
        raise errors.Internal("llama.cpp failed to tokenize the text")
    return list(tokens[:n])


class GgufVocabulary:
    """A GGUF file's vocabulary without its weights: llama.cpp's own tokenizer, as llama-server runs it over
    the same file (a few MB, loaded in well under a second)."""

    def __init__(self, path: Path) -> None:
        _init_backend()
        lc = self.lc = _llama()
        params = lc.llama_model_default_params()
        params.vocab_only = True
        self.model = lc.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise errors.FailedPrecondition(f"llama.cpp could not read the vocabulary of {path}")
        self.vocab = lc.llama_model_get_vocab(self.model)

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        return tokenize_with(self.lc, self.vocab, text, add_bos)

    def close(self) -> None:
        if self.model:
            self.lc.llama_model_free(self.model)
            self.model = None


def attention_mode(*, flash_attention: bool, batch_invariant: bool, key_type: str) -> str:
    """How a context computes attention and matrix products, as kept KV state names it: state computed in another
    mode rounds differently and is recomputed, not read (the invariant modes multiply K-quant weights by dot
    products alone since 2026-12-06). ``key_type`` is the K type the context caches ("f16 bf16": f16 K beside bf16
    V)."""
    if not flash_attention:
        return "plain attention, dot products"
    if not batch_invariant:
        return "flash attention"
    if key_type == "f16":
        return f"flash attention, f16 K and V, prompts tiled past {ONE_PASS_CELLS} cells, dot products"
    if key_type == "f16 bf16":
        return "flash attention, bf16 V, dot products"  # f16 K where q8_0 K was asked for and cannot be
    return f"flash attention, {key_type} K, bf16 V, dot products"


class NativeModel:
    """A GGUF model with a context of ``slots`` sequences, each with its own KV stream.

    Why one stream per sequence: llama.cpp's CPU attention sums over a stream's cells in cell order. In a shared
    (unified) cache a sequence's cells land wherever there is room, so its numbers would depend on what else is
    cached; in its own stream it always holds cells [0, n) in position order. Which attention kernel reads a row:
    llama.cpp's CPU flash attention has three, each rounding its own way: a one-pass kernel (a row over its cells in
    cell order, f32 sums); a tiled one for calls of TILE_ROWS rows or more a stream, whose products sum each element
    in a fixed order over K tiles that start at cell 0, so a row rounds alike whatever else its call holds; and, for
    a lone decode row past 512 cells, one that splits the cells across threads and sums the parts. The last two it
    takes only where K and V are both f16. So, with ``batch_invariant`` (the default) and f16 K (``key_type``, the
    default): every prompt call of a prompt of more than ONE_PASS_CELLS prompt rows (its tokens but the last) is
    padded to at least TILE_ROWS rows (``_padding``), so its rows are tiled however it was cut; a shorter prompt is
    read in one pass (its calls stay under TILE_ROWS rows); decode rows are one pass, and a lone one that would be
    split gets a second row: the scheduler's draft of its next token in its own stream (``Decoder.split_rows``,
    ``drafts``), else a companion row in the next stream (``_companions``; one stream more than slots is kept for
    the last slot's), which llama.cpp reads together with it in one pass. Cells a decode step computed are never
    read as a prompt's (see ``scheduler``). With the scheduler's rules on top, a seeded request gives the same text
    alone or among others, cold or warm. With q8_0 K, V is cached as bf16 and every row is read in one pass: half
    the K bytes a decode step reads (faster decoding thousands of tokens in), prompts of thousands of tokens read at
    about two thirds of the speed; a model whose heads are not whole q8_0 blocks keeps f16 K then. A windowed
    sliding-window cache (which pads nothing) keeps bf16 V too. Without flash attention (the plain path) rows are
    invariant with f16 V. (``batch_invariant=False`` keeps f16 K and V and those kernels as llama-server runs them,
    with no padding nor companion rows: output may depend on load.)

    The matrix products must round alike whatever the rows of a call too: they do for SmolLM2's Q4_1 weights and
    for Q5_0 and Q8_0 (llamafile's kernel for two rows or more sums as ggml's dot product for one); K-quant weights
    (Gemma 3's Q4_K and Q6_K) are then multiplied by ggml's dot products alone (see ``library.choose_matmul_kernels``).

    The KV cache llama.cpp zeroes whole as it makes the context goes back to the kernel at once and is backed
    again as cells are written (``localgem.zeroed_pages``; ``hand_back_kv_pages=False`` keeps it whole, for
    comparison).
    """

    def __init__(
        self,
        path: Path,
        *,
        slots: int,
        sequence_length: int,
        batch_size: int,
        threads: int | None,
        flash_attention: bool = True,
        batch_invariant: bool = True,
        key_type: str = "f16",
        mmproj: Path | None = None,
        sliding_window_full: bool = True,
        hand_back_kv_pages: bool = True,
    ) -> None:
        _init_backend()
        lc = self.lc = _llama()
        #: Each row's numbers do not depend on the rest of its call (see the class's docstring).
        self.batch_invariant = batch_invariant or not flash_attention
        if not choose_matmul_kernels(self.batch_invariant):
            log.warning(
                "%s: this process chose llama.cpp's tiled K-quant kernel before (batch_invariant = false): this "
                "model's K-quant weights may round with the rows of a call",
                path.name,
            )
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model_params.use_extra_bufts = not self.batch_invariant
        self.model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise errors.Internal(f"llama.cpp could not load the model file {path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        trained = lc.llama_model_n_ctx_train(self.model)
        n_threads = threads or os.cpu_count() or 1
        context_length = min(sequence_length, trained)
        #: Positions a sliding-window layer attends back over, where it keeps only those (0: it keeps all).
        self.window = 0 if sliding_window_full else max(int(lc.llama_model_n_swa(self.model)), 0)
        invariant_flash = flash_attention and batch_invariant
        #: Prompt rows are read by the tiled kernel, decode rows in one pass (see the class's docstring).
        self.tiled = invariant_flash and key_type == "f16" and not self.window
        if invariant_flash and key_type == "f16" and self.window:
            key_type = "f16 bf16"
        streams = slots + 1 if self.tiled else slots
        params = lc.llama_context_default_params()
        params.n_ctx = context_length * streams  # split evenly into one stream per sequence
        params.n_batch = batch_size
        params.n_ubatch = batch_size
        params.n_seq_max = streams
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = False
        params.flash_attn_type = _FLASH_ATTENTION[flash_attention]
        if invariant_flash:
            params.type_k = GGML_TYPES[key_type.split()[0]]
            params.type_v = GGML_TYPES["f16" if self.tiled else "bf16"]
        # Sliding-window layers (Gemma 3's) keep all of a slot's cells, or only their window (as llama-server
        # does by default): a slot's cells then hold only what continues from their end (see ``holds``).
        params.swa_full = sliding_window_full
        params.no_perf = True
        # llama.cpp writes zeros over its whole KV cache: handed back, it is backed again cell by cell as slots
        # fill. One context made at a time: another one's fresh cache, of the same size, is not taken for this one's.
        with _making_context:
            before = Mappings.now()
            with native_lines() as lines:
                self.ctx = lc.llama_init_from_model(self.model, params)
                if not self.ctx and params.type_k != GGML_TYPES["f16"]:
                    # q8_0 K takes heads of whole blocks of 32 numbers: a model with other heads keeps f16 K.
                    log.warning("%s: llama.cpp cannot cache this model's K as %s; K cached as f16", path.name, key_type)
                    lines.clear()
                    params.type_k = GGML_TYPES["f16"]
                    self.ctx = lc.llama_init_from_model(self.model, params)
                    key_type = "f16 bf16"
            if not self.ctx:
                lc.llama_model_free(self.model)
                raise errors.Internal(f"llama.cpp could not create a context for {path}")
            kv_sizes = [round(float(m.group(1)) * 2**20) for line in lines if (m := _KV_BUFFER_LINE.search(line))]
            #: Bytes of this context's KV cache handed back to the kernel as it was made.
            self.handed_back = hand_back_zeroed_buffers(before, kv_sizes) if hand_back_kv_pages else 0
        log.info(
            "%s: KV cache of %.1f MiB, %.1f MiB of it handed back to the kernel until used",
            path.name,
            sum(kv_sizes) / 2**20,
            self.handed_back / 2**20,
        )
        #: The mode this context computes in (``attention_mode``), with the K type it was made with.
        self.attention_mode = attention_mode(
            flash_attention=flash_attention, batch_invariant=batch_invariant, key_type=key_type
        )
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch_size = batch_size
        self.slots = slots
        self._batch = lc.llama_batch_init(batch_size, 0, 1)
        self.vocab_size = lc.llama_vocab_n_tokens(self.vocab)
        self.eos_token = int(lc.llama_vocab_eos(self.vocab))
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._scratch: Any = None  # see ``_serialise``
        template = lc.llama_model_chat_template(self.model, None)
        self.info = ModelInfo(
            context_length=context_length,
            trained_context_length=trained,
            vocab_size=self.vocab_size,
            chat_template=template.decode("utf-8") if template else None,
            bos_token=self.token_text(lc.llama_vocab_bos(self.vocab)),
            eos_token=self.token_text(lc.llama_vocab_eos(self.vocab)),
            add_bos=bool(lc.llama_vocab_get_add_bos(self.vocab)),
        )
        self._adapters: OrderedDict[str, Any] = OrderedDict()  # path → llama_adapter_lora *
        self._adapter: str | None = None  # the one the context applies now
        self.vision: Vision | None = None
        if mmproj is not None:
            try:
                self.vision = Vision(lc, self.model, mmproj, threads=n_threads, batch_size=batch_size)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if getattr(self, "vision", None) is not None:
            self.vision.close()
        if getattr(self, "_adapters", None):
            self.use_adapter(None)
            for handle in self._adapters.values():
                self.lc.llama_adapter_lora_free(handle)
            self._adapters.clear()
        self.lc.llama_batch_free(self._batch)
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)

    # -- vocabulary -----------------------------------------------------------------------------

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self.lc.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        return tokenize_with(self.lc, self.vocab, text, add_bos)

    def plain_tokens(self, text: str) -> list[int]:
        """``text`` as tokens, reading nothing in it as a special token."""
        return tokenize_with(self.lc, self.vocab, text, False, special=False)

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self.lc.llama_vocab_is_eog(self.vocab, token))

    def piece(self, token: int) -> bytes:
        n = self.lc.llama_token_to_piece(self.vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False)
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            n = self.lc.llama_token_to_piece(self.vocab, token, self._piece_buffer, -n, 0, False)
        return self._piece_buffer.raw[:n]

    # -- context --------------------------------------------------------------------------------

    def decode(self, items: list[BatchItem]) -> bool:
        """Decode one batch; False when the KV cache has no room for it (nothing was changed)."""
        padding = self._padding(items)
        companions = self._companions(items)
        if padding:
            last = items[-1]
            items = items + [
                BatchItem(last.sequence, last.token, last.position + k, False) for k in range(1, padding + 1)
            ]
        items = items + companions
        batch = self._batch
        for i, item in enumerate(items):
            batch.token[i] = item.token
            batch.pos[i] = item.position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = item.sequence
            batch.logits[i] = item.logits
        batch.n_tokens = len(items)
        status = self.lc.llama_decode(self.ctx, batch)
        if status == 1:
            return False
        if status != 0:
            raise errors.Internal(f"llama.cpp decode failed with status {status}")
        if padding:
            self.forget(items[0].sequence, items[-1].position - padding + 1)
        for companion in companions:
            self.forget(companion.sequence, companion.position)
        return True

    def _companions(self, items: list[BatchItem]) -> list[BatchItem]:
        """Rows that keep a decode step's lone rows off llama.cpp's split kernel (see the class's docstring), removed
        after. llama.cpp reads each run of consecutive stream ids of a call together, so a row is lone where neither
        neighbouring stream has a row in the step: its companion is the same token after the cells of the next
        stream (one more stream than slots is kept for the last slot's). Put after the step's rows, companions
        leave their batch indices as they were. None for a row whose next stream is full (it is split there)."""
        companions = []
        for item in (items[index] for index in self.split_rows(items)):
            neighbour = item.sequence + 1
            position = int(self.lc.llama_memory_seq_pos_max(self.memory, neighbour)) + 1
            if position < self.info.context_length:
                companions.append(BatchItem(neighbour, item.token, position, False))
        return companions

    def split_rows(self, items: list[BatchItem]) -> list[int]:
        """The rows of a decode step llama.cpp would split across threads (see the class's docstring)."""
        return lone_rows(items, SPLIT_FROM_POSITION) if self.tiled else []

    def _padding(self, items: list[BatchItem]) -> int:
        """Filler rows that make a prompt call end on a multiple of PROMPT_CELLS_MULTIPLE cells and, where prompts
        are tiled, hold at least TILE_ROWS rows (removed after).

        Why: llama.cpp's CPU kernels take another path for what is left over from a multiple of a few rows or
        cells (the plain path's attention sums over the cells a stream uses eight at a time), and the tiled
        attention kernel only for calls of TILE_ROWS rows, so the rows of a call that ended at an odd place or was
        short would round differently from the same rows cut elsewhere (a cold start against a prompt that goes on
        from reused cells). Not for decode steps (the same cell counts cold and warm), nor where rows need not be
        invariant (``batch_invariant=False``), nor for a windowed sliding-window cache (whose layers would drop
        cells that later rows still need). Where the filler would not fit in the context, the scheduler starts the
        call earlier instead (``min_prompt_rows``). A call that ends within the first ONE_PASS_CELLS cells is not
        padded to TILE_ROWS rows: the scheduler gives such calls only to prompts that short (a longer prompt's first
        call goes past them, unless a picture starts within them), so those prompts are read in one pass whatever
        their cut, and the rules of reuse keep the two kinds of cells apart (``prefix_reuse.reusable``). The bench's
        prompts of ~40 tokens were read as 64 rows without this."""
        if not self.batch_invariant or self.window or not items or items[0].logits:
            return 0
        end = items[-1].position + 1
        padding = padded_end(items[0].position, end, self.min_prompt_rows, self.one_pass_cells) - end
        if end + padding > self.info.context_length or len(items) + padding > self.batch_size:
            return 0
        return padding

    @property
    def min_prompt_rows(self) -> int:
        """Rows a prompt call is padded to (0: none), unless it ends within ``one_pass_cells``."""
        return TILE_ROWS if self.tiled else 0

    @property
    def one_pass_cells(self) -> int:
        """A prompt call that ends within this many cells is read in one pass (see ``_padding``)."""
        return ONE_PASS_CELLS if self.tiled else 0

    def load_adapter(self, adapter: str) -> None:
        """Loads a LoRA adapter file for ``use_adapter`` (kept: see MAX_ADAPTERS)."""
        if adapter in self._adapters:
            self._adapters.move_to_end(adapter)
            return
        handle = self.lc.llama_adapter_lora_init(self.model, adapter.encode())
        if not handle:
            raise errors.FailedPrecondition(f"llama.cpp could not load the LoRA adapter {adapter} over this model.")
        self._adapters[adapter] = handle
        while len(self._adapters) > MAX_ADAPTERS:
            oldest = next(path for path in self._adapters if path != self._adapter)
            self.lc.llama_adapter_lora_free(self._adapters.pop(oldest))

    def use_adapter(self, adapter: str | None) -> None:
        """The decodes from now on apply this adapter over the base weights (None: none). Changing it costs
        llama.cpp a new compute graph (a few ms), so the scheduler groups decodes by adapter."""
        if adapter == self._adapter:
            return
        if adapter is None:
            status = self.lc.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            self.load_adapter(adapter)
            handles = (self.lc.llama_adapter_lora_p_ctypes * 1)(self._adapters[adapter])
            scales = (ctypes.c_float * 1)(1.0)
            status = self.lc.llama_set_adapters_lora(self.ctx, handles, 1, scales)
        if status != 0:
            raise errors.Internal(f"llama.cpp could not apply the LoRA adapter {adapter}")
        self._adapter = adapter

    def decode_embeddings(self, sequence: int, position: int, embeddings: np.ndarray, non_causal: bool) -> bool:
        """Decode rows of input embeddings (a picture's, from ``vision``) in one pass; False when the KV
        cache has no room for them (nothing was changed)."""
        rows, width = embeddings.shape
        batch = self.lc.llama_batch_init(rows, width, 1)
        try:
            data = np.ascontiguousarray(embeddings, dtype=np.float32)
            ctypes.memmove(batch.embd, data.ctypes.data, data.nbytes)
            for i in range(rows):
                batch.pos[i] = position + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = sequence
                batch.logits[i] = False
            batch.n_tokens = rows
            if non_causal:
                self.lc.llama_set_causal_attn(self.ctx, False)
            try:
                status = self.lc.llama_decode(self.ctx, batch)
            finally:
                if non_causal:
                    self.lc.llama_set_causal_attn(self.ctx, True)
        finally:
            self.lc.llama_batch_free(batch)
        if status == 1:
            return False
        if status != 0:
            raise errors.Internal(f"llama.cpp decode of image embeddings failed with status {status}")
        return True

    def forget(self, sequence: int, start: int = -1) -> None:
        """Drop a sequence's cells from ``start`` on (all of them by default)."""
        self.lc.llama_memory_seq_rm(self.memory, sequence, start, -1)

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.memory, False)

    def save_sequence(self, sequence: int) -> bytes:
        """A sequence's KV cells, serialised by llama.cpp (for ``load_sequence``, in this model only)."""
        buffer, written = self._serialise(sequence)
        state = ctypes.string_at(buffer, written)
        self._let_go_of_large_scratch()
        return state

    def copy_cells(self, source: int, target: int) -> bool:
        """Replace ``target``'s cells with a copy of ``source``'s, through llama.cpp's sequence state: only the
        cells in use are copied (``llama_memory_seq_cp`` copies whole streams); False (and an empty target) if they do
        not fit."""
        buffer, written = self._serialise(source)
        self.forget(target)
        copied = written > 0 and self.lc.llama_state_seq_set_data(self.ctx, buffer, written, target) != 0
        if not copied:
            self.forget(target)
        self._let_go_of_large_scratch()
        return copied

    def _serialise(self, sequence: int) -> tuple[Any, int]:
        """A sequence's state in the scratch buffer (kept between calls: fresh memory costs a page fault per
        4 KiB, several times the copy itself), and its length."""
        size = self.lc.llama_state_seq_get_size(self.ctx, sequence)
        if self._scratch is None or len(self._scratch) < size:
            self._scratch = (ctypes.c_uint8 * size)()
        return self._scratch, self.lc.llama_state_seq_get_data(self.ctx, self._scratch, size, sequence)

    def _let_go_of_large_scratch(self) -> None:
        if self._scratch is not None and len(self._scratch) > SCRATCH_KEPT_BYTES:
            self._scratch = None

    def holds(self, sequence: int, cells: int) -> bool:
        """As llama-server checks: the earliest position the sequence still holds in every layer must be within
        one window of ``cells`` (a windowed sliding-window cache has dropped the cells before it)."""
        if not self.window or cells == 0:
            return True
        earliest = self.lc.llama_memory_seq_pos_min(self.memory, sequence)
        return 0 <= earliest <= max(0, cells - self.window)

    def load_sequence(self, sequence: int, state: bytes) -> bool:
        """Replace a sequence's cells with saved ones; False (and an empty sequence) if they do not fit."""
        self.forget(sequence)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self.lc.llama_state_seq_set_data(self.ctx, buffer, len(state), sequence) == 0:
            self.forget(sequence)
            return False
        return True

    def logits(self, batch_index: int) -> np.ndarray:
        """The logits of one batch row (a view: valid until the next decode)."""
        return np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, batch_index), shape=(self.vocab_size,))

    def grammar_sampler(self, grammar: Grammar) -> Any:
        """A grammar sampler for this vocabulary; ValueError if llama.cpp cannot parse the grammar."""
        # Lazy grammars are handled by the Sampler, not by llama.cpp's lazy mode: that one runs a
        # std::regex over the whole output at every token (slow, and deep recursion on long outputs).
        sampler = self.lc.llama_sampler_init_grammar(self.vocab, grammar.gbnf.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError("llama.cpp could not parse the grammar")
        return sampler

    def check_grammar(self, grammar: Grammar) -> None:
        self.lc.llama_sampler_free(self.grammar_sampler(grammar))

    def sampler(self, params: SamplingParams, seed: int | None, window: int, grammar: Grammar | None = None) -> Sampler:
        return Sampler(self, params, seed, window, grammar)

    def step_logprobs(self, batch_index: int, chosen: int, top_n: int) -> StepLogprobs:
        logits = self.logits(batch_index)
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
        top: tuple[TokenLogprob, ...] = ()
        if top_n > 0:
            best = np.argpartition(-logits, top_n)[:top_n]
            best = best[np.argsort(-logits[best], kind="stable")]
            top = tuple(self._token_logprob(int(t), float(logits[t]) - log_total) for t in best)
        return StepLogprobs(self._token_logprob(chosen, float(logits[chosen]) - log_total), top)

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        return TokenLogprob(token, self.piece(token).decode("utf-8", errors="replace"), logprob)
