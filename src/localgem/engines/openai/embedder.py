"""An embedding model served by another server's OpenAI API (``/v1/embeddings``): llama-server started
with ``--embeddings``, vLLM, Ollama, LocalAI. The ``engines.embedding`` batcher runs it on its own thread, so
this talks to the server synchronously.

Texts are tokenized by the server (``/tokenize``) and sent as token ids, so that a text over the limit is cut
exactly where localgem says, and counts are the engine's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np

from localgem import errors
from localgem.engines.embedding.engine import EmbedderInfo, EmbedderStats
from localgem.engines.openai.engine import api_root, discover, flavour_of, tokenize_body


class OpenAIEmbedder:
    def __init__(
        self, base_url: str, *, api_key: str | None = None, model: str | None = None, max_tokens: int | None = None
    ) -> None:
        self.root = api_root(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.root, headers=headers, timeout=httpx.Timeout(10.0, read=600.0))
        found = discover(self._http, self.root, model)
        self.model = found.model
        self._flavour = flavour_of(found)
        served = ((found.props or {}).get("default_generation_settings") or {}).get("n_ctx")
        limit = min(max_tokens or served or 512, served or max_tokens or 512)
        self.stats = EmbedderStats()
        self._counted: dict[str, list[int]] = {}
        self.info = EmbedderInfo(0, int(limit), {})
        self.info = EmbedderInfo(len(self._embed([[*self._tokens("dimensions")]])[0]), int(limit), {})

    def _post(self, path: str, body: dict) -> dict:
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise errors.Unavailable(
                f"The upstream engine at {self.root} does not answer ({type(exc).__name__})."
            ) from None
        if response.status_code == 429:
            raise errors.ResourceExhausted(f"The upstream engine is at capacity: {response.text}")
        if response.status_code == 503:
            raise errors.Unavailable(f"The upstream engine is unavailable: {response.text}")
        if response.status_code != 200:
            raise errors.Internal(f"The upstream engine failed ({response.status_code}): {response.text}")
        return response.json()

    def _tokens(self, text: str) -> list[int]:
        body = tokenize_body(self._flavour, self.model, text, add_special=True, parse_special=False)
        return [int(t) for t in self._post("/tokenize", body)["tokens"]]

    def _embed(self, inputs: list[list[int]]) -> np.ndarray:
        data = self._post("/v1/embeddings", {"model": self.model, "input": inputs})["data"]
        rows = sorted(data, key=lambda row: row["index"])
        return np.asarray([row["embedding"] for row in rows], dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        # The batcher counts a round's texts, then embeds them: their ids are kept for that (one round's only).
        self._counted = {text: self._tokens(text) for text in texts}
        return [len(self._counted[text]) for text in texts]

    def embed(self, texts: Sequence[str], tokens: Sequence[int] | None = None) -> np.ndarray:
        self.stats.calls += 1
        self.stats.texts += len(texts)
        counted, self._counted = self._counted, {}
        ids = [counted[text] if text in counted else self._tokens(text) for text in texts]
        return self._embed([row[: self.info.max_tokens] for row in ids])

    def close(self) -> None:
        self._http.close()
