"""Voice activity, frame by frame, with Silero VAD (the ONNX model faster-whisper ships): a real
speech/non-speech classifier, not an energy threshold."""

from __future__ import annotations

import threading

import numpy as np

FRAME = 512  # samples at 16 kHz: 32 ms, the window Silero v6 classifies
_CONTEXT = 64

_session = None
_session_lock = threading.Lock()


def load():
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime
            from faster_whisper.vad import get_assets_path

            options = onnxruntime.SessionOptions()
            options.inter_op_num_threads = 1
            options.intra_op_num_threads = 1
            options.log_severity_level = 4
            _session = onnxruntime.InferenceSession(
                f"{get_assets_path()}/silero_vad_v6.onnx", providers=["CPUExecutionProvider"], sess_options=options
            )
        return _session


class VoiceActivity:
    """One audio stream's speech probabilities, 32 ms frame by frame (the model's state carries over)."""

    def __init__(self) -> None:
        self._session = load()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[float]:
        """float32 samples at 16 kHz → the probability of speech in each whole frame completed."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32)])
        whole = self._pending.size // FRAME
        if whole == 0:
            return []
        frames = self._pending[: whole * FRAME].reshape(whole, FRAME)
        self._pending = self._pending[whole * FRAME :]
        contexts = np.vstack([self._context[None, :], frames[:-1, -_CONTEXT:]])
        batch = np.concatenate([contexts, frames], axis=1)
        self._context = frames[-1, -_CONTEXT:].copy()
        output, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        return [float(p) for p in np.asarray(output).reshape(-1)]
