"""``groundingSupports``: which retrieved passages back which sentences of an answer.

Each sentence of the answer is matched to the passages by the content words they share (case and
punctuation aside, a few function words left out): a passage supports a sentence when it holds at
least half of the sentence's content words, and at least two of them. The best three are kept, best
first, with that share as their confidence. Segments are given in bytes of the UTF-8 text (Google's
``startIndex`` inclusive, ``endIndex`` exclusive), in the part they come from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MIN_SHARE = 0.5
MIN_WORDS = 2
MAX_CHUNKS = 3

# A sentence runs to . ! or ? before whitespace (not the dot in "v1.2"), a line's end or the text's.
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?]+(?=[^\s.!?]))+(?:[.!?]+|(?=\n)|$)")
_WORD = re.compile(r"\w+", re.UNICODE)
_FUNCTION_WORDS = frozenset(
    "a an and are as at be been but by can did do does for from had has have he her his i if in into is it its "
    "of on or our she so than that the their them then there these they this those to was we were what when "
    "which who will with would you your".split()
)


@dataclass(frozen=True)
class Support:
    start: int  # bytes, inclusive
    end: int  # bytes, exclusive
    text: str
    chunk_indices: tuple[int, ...]
    confidences: tuple[float, ...]


def content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _FUNCTION_WORDS}


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, surrounding whitespace left out."""
    spans = []
    for found in _SENTENCE.finditer(text):
        start, end = found.span()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            spans.append((start, end))
    return spans


def supports(answer: str, passages: Sequence[str]) -> list[Support]:
    words = [content_words(p) for p in passages]
    found = []
    for start, end in sentences(answer):
        sentence = answer[start:end]
        wanted = content_words(sentence)
        if len(wanted) < MIN_WORDS:
            continue
        scored = []
        for index, passage in enumerate(words):
            shared = len(wanted & passage)
            share = shared / len(wanted)
            if shared >= MIN_WORDS and share >= MIN_SHARE:
                scored.append((share, index))
        if not scored:
            continue
        best = sorted(scored, key=lambda pair: (-pair[0], pair[1]))[:MAX_CHUNKS]
        found.append(
            Support(
                start=len(answer[:start].encode()),
                end=len(answer[:end].encode()),
                text=sentence,
                chunk_indices=tuple(i for _, i in best),
                confidences=tuple(round(s, 4) for s, _ in best),
            )
        )
    return found
