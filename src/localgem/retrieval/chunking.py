"""``chunkingConfig.whiteSpaceConfig``: a document's text cut at whitespace into chunks of at most
``maxTokensPerChunk`` tokens, each starting with up to ``maxOverlapTokens`` tokens of the one before.

Google counts words as tokens here; localgem counts the embedding model's own tokens (a word is one
or more of them), so no chunk is longer than the embedder reads: a chunk of 200 "tokens" is never
cut short when it is embedded. Chunks keep the text's own spacing (newlines, paragraphs) between
their words, and say where in the text they start, so a passage can be found in its source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from localgem import errors

DEFAULT_MAX_TOKENS = 200  # about what Google's stores make when the request sets nothing
DEFAULT_OVERLAP_TOKENS = 20
MAX_TOKENS_LIMIT = 512  # Google: "the upper limit to 2**9, which is 512 words"

#: Tokens each word takes (words as the text splits them at whitespace).
WordTokens = Callable[[Sequence[str]], list[int]]

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class ChunkingRule:
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS

    @classmethod
    def of(cls, max_tokens: int | None, overlap_tokens: int | None, where: str = "chunking_config") -> ChunkingRule:
        """The rule a request asks for (unset: the defaults), or a 400 naming the bad field."""
        size = DEFAULT_MAX_TOKENS if not max_tokens else max_tokens
        overlap = DEFAULT_OVERLAP_TOKENS if overlap_tokens is None else overlap_tokens
        if overlap_tokens is None and size <= overlap:
            overlap = size // 4
        field = f"{where}.white_space_config"
        if not 1 <= size <= MAX_TOKENS_LIMIT:
            raise errors.invalid_field(
                f"{field}.max_tokens_per_chunk", f"maxTokensPerChunk must be from 1 to {MAX_TOKENS_LIMIT}, not {size}."
            )
        if not 0 <= overlap < size:
            raise errors.invalid_field(
                f"{field}.max_overlap_tokens",
                f"maxOverlapTokens must be at least 0 and less than maxTokensPerChunk ({size}), not {overlap}.",
            )
        return cls(size, overlap)


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offset of the chunk's first word in the document's text
    tokens: int


def chunk_text(text: str, rule: ChunkingRule, word_tokens: WordTokens) -> list[Chunk]:
    """The chunks of ``text``. A word longer than a whole chunk is a chunk of its own (the embedder
    reads its beginning); every other chunk fits ``rule.max_tokens``."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        return []
    sizes = [max(1, n) for n in word_tokens([text[a:b] for a, b in words])]
    chunks: list[Chunk] = []
    first = 0
    while first < len(words):
        last, total = first, sizes[first]
        while last + 1 < len(words) and total + sizes[last + 1] <= rule.max_tokens:
            last += 1
            total += sizes[last]
        chunks.append(Chunk(text[words[first][0] : words[last][1]], words[first][0], total))
        if last + 1 >= len(words):
            break
        # The next chunk starts with the last words of this one, up to the overlap, and always moves on.
        start, carried = last + 1, 0
        while start - 1 > first and carried + sizes[start - 1] <= rule.overlap_tokens:
            start -= 1
            carried += sizes[start]
        first = start
    return chunks
