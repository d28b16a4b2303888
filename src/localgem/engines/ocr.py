"""Text in images, read by RapidOCR (PP-OCR detection and recognition, ONNX weights shipped in its wheel)."""

from __future__ import annotations

import numpy as np

from localgem.one_thread import OneThread


class TextReader:
    """Call ``read`` through ``thread``: one image at a time."""

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._ocr = RapidOCR()
        self.thread = OneThread("ocr")

    def read(self, rgb: np.ndarray) -> str:
        """The text of an RGB image, line by line, in reading order."""
        found, _ = self._ocr(np.ascontiguousarray(rgb[:, :, ::-1]))  # RapidOCR takes BGR, as OpenCV
        lines: list[tuple[float, float, list[tuple[float, str]]]] = []  # (top, bottom, [(left, text)])
        for box, text, _score in found or []:
            ys = [point[1] for point in box]
            top, bottom, left = min(ys), max(ys), min(point[0] for point in box)
            middle = (top + bottom) / 2
            line = next((line for line in lines if line[0] <= middle <= line[1]), None)
            if line is None:
                lines.append((top, bottom, [(left, text.strip())]))
            else:
                line[2].append((left, text.strip()))
        lines.sort(key=lambda line: line[0])
        return "\n".join(" ".join(text for _, text in sorted(words)) for _, _, words in lines).strip()
