"""A sentence-transformers model (its transformer, pooling, dense and normalisation modules) on ONNX Runtime.

The same float32 arithmetic in other kernels: ONNX Runtime's fused attention, GELU and layer norm cost a third of
PyTorch's per-pass overhead (2 ms instead of 6 ms a forward pass of MiniLM on two cores) and ~7% less a token,
which lets a server that sees 100 texts a call compute them in small, little-padded passes. The export is checked
against PyTorch on load; a model that does not export, or gives other numbers, stays on PyTorch.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Inputs the exported graph may take, as Hugging Face tokenizers name them.
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: Largest difference from PyTorch's vectors (normalised) that the check on load accepts (seen: ~2e-7).
TOLERANCE = 1e-5

#: Texts the check on load embeds in three passes: two of different lengths (one padded), one alone, three.
PROBE = [
    "A short probe.",
    "A longer probe sentence, so that the pass has padding in it as well, and more tokens than the others.",
    "Seven words, no padding, in a pass alone.",
    "Three texts together: the first.",
    "Then a second one,",
    "and a third of them, the longest of these three to be read in one pass.",
]
SHAPES = (slice(0, 2), slice(2, 3), slice(3, 6))


class OnnxSentenceModel:
    """Runs ``model`` (a ``SentenceTransformer``: transformer, pooling and the rest) as one ONNX Runtime graph."""

    def __init__(self, model: Any, session: Any, inputs: tuple[str, ...]) -> None:
        self._model = model
        self._session = session
        self._inputs = inputs

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The model's sentence embeddings of ``texts`` in one forward pass, as ``encode`` gives them (its own
        normalisation module included, if it has one)."""
        features = _preprocess(self._model, list(texts))
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in self._inputs}
        (vectors,) = self._session.run(None, feed)
        return vectors


def onnx_sentence_model(model: Any, threads: int) -> OnnxSentenceModel | None:
    """``model`` exported whole to ONNX Runtime, or None (and why, in the log) where that does not give PyTorch's
    numbers, in passes of several shapes, or cannot be done here."""
    try:
        import onnxruntime
        import torch

        features = _preprocess(model, PROBE[:2])
        inputs = tuple(name for name in INPUTS if name in features)
        graph = _export(model, features, inputs)
        options = onnxruntime.SessionOptions()
        # ONNX Runtime's own thread pool (not OpenMP), its threads spinning between ops as by default: sleeping
        # measured 13% slower in-process and 10% slower through the server (bench/embeddings.py) on two cores.
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        runner = OnnxSentenceModel(model, session, inputs)
        with torch.inference_mode():
            expected = model.encode(PROBE, convert_to_numpy=True, normalize_embeddings=True)
        found = np.concatenate([runner.vectors(PROBE[shape]) for shape in SHAPES])
        found = found / np.linalg.norm(found, axis=1, keepdims=True)
        difference = float(np.abs(found - expected).max())
    except Exception as exc:  # any failure to export or run: PyTorch serves the model
        log.info("embedding model stays on PyTorch: no ONNX export (%s: %s)", type(exc).__name__, exc)
        return None
    if not difference <= TOLERANCE:
        log.info("embedding model stays on PyTorch: its ONNX export differs by %.2g", difference)
        return None
    log.info("embedding model on ONNX Runtime (%.2g from PyTorch on the probe texts)", difference)
    return runner


def _export(model: Any, features: dict[str, Any], inputs: tuple[str, ...]) -> bytes:
    """The whole model as one graph: its transformer's last hidden state, then its other modules (pooling, dense,
    normalisation), so that no PyTorch op runs beside ONNX Runtime's threads at serving time."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.modules_ = torch.nn.ModuleList(list(model))

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            given = dict(zip(inputs, tensors, strict=True))
            found = {**given, "token_embeddings": self.modules_[0].auto_model(**given).last_hidden_state}
            for module in self.modules_[1:]:
                found = module(found)
            return found["sentence_embedding"]

    axes = {name: {0: "texts", 1: "tokens"} for name in inputs} | {"vectors": {0: "texts"}}
    graph = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow, checked by the probe instead
        torch.onnx.export(
            SentenceEmbedding().eval(),
            tuple(torch.as_tensor(features[name]) for name in inputs),
            graph,
            dynamo=False,
            input_names=list(inputs),
            output_names=["vectors"],
            dynamic_axes=axes,
            opset_version=17,
        )
    return graph.getvalue()


def _preprocess(model: Any, texts: list[str]) -> dict[str, Any]:
    """The model's own tokenisation (sentence-transformers ≥ 5 calls it ``preprocess``, 3 and 4 ``tokenize``)."""
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    return preprocess(texts)
